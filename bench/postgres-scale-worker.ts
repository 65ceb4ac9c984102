/**
 * One worker thread of the scale benchmark (postgres-scale.ts): simulates its share of the
 * executors, each holding a long-polling dequeue and heartbeating every 5 s, and reports what it
 * measured. Spread over threads, no single event loop carries the whole fleet, so a slow reply
 * measures the coordinator rather than the simulating process.
 *
 * Messages in: {type: "measure"} starts recording, {type: "stop"} ends the run (the worker then
 * posts its figures and exits). Message out: WorkerFigures.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parentPort, workerData } from "node:worker_threads";
import { Agent, request } from "undici";
import { SimulatedExecutor } from "./postgres-airlock.ts";

export interface WorkerInput {
  url: string;
  /** Executor indexes [first, first + count) of a fleet of `fleet`. */
  first: number;
  count: number;
  fleet: number;
  heartbeatMs: number;
  /** Also time GET /healthz every this many ms (0: no probe): the round trip of a request that does no work. */
  probeMs: number;
}

export interface WorkerFigures {
  heartbeatsMs: number[];
  dequeueMs: number[];
  probeMs: number[];
  errors: number;
  loopDelayP99Ms: number;
}

const input = workerData as WorkerInput;
const agent = new Agent({ connections: null, keepAliveTimeout: 60_000, headersTimeout: 60_000 });
const stop = new AbortController();
const measuring = { on: false };
const figures: WorkerFigures = { heartbeatsMs: [], dequeueMs: [], probeMs: [], errors: 0, loopDelayP99Ms: 0 };
const loopDelay = monitorEventLoopDelay({ resolution: 10 });

async function simulate(executor: SimulatedExecutor, index: number): Promise<void> {
  // Stagger the fleet over one heartbeat interval, as executors started at different times are.
  await new Promise((resolve) => setTimeout(resolve, (index * input.heartbeatMs) / input.fleet));
  const beat = setInterval(() => {
    const sent = performance.now();
    executor
      .heartbeat([])
      .then(() => measuring.on && figures.heartbeatsMs.push(performance.now() - sent))
      .catch(() => (figures.errors += 1));
  }, input.heartbeatMs);
  try {
    while (!stop.signal.aborted) {
      try {
        const job = await executor.dequeue(25_000, stop.signal);
        if (!job) continue;
        if (measuring.on) figures.dequeueMs.push(Date.now() - Number(job.spec.steps[0]?.env.QUEUED_AT));
        await executor.complete(job);
      } catch {
        if (!stop.signal.aborted) {
          figures.errors += 1;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    }
  } finally {
    clearInterval(beat);
  }
}

async function probe(): Promise<void> {
  while (!stop.signal.aborted) {
    await new Promise((resolve) => setTimeout(resolve, input.probeMs));
    const sent = performance.now();
    try {
      const response = await request(`${input.url}/healthz`, { dispatcher: agent });
      await response.body.dump();
      if (measuring.on) figures.probeMs.push(performance.now() - sent);
    } catch {
      if (!stop.signal.aborted) figures.errors += 1;
    }
  }
}

const loops = Array.from({ length: input.count }, (_, offset) => {
  const index = input.first + offset;
  return simulate(new SimulatedExecutor(input.url, agent, `sim-${index}`, "scale"), index);
});
if (input.probeMs > 0) loops.push(probe());

parentPort?.on("message", (message: { type: string }) => {
  if (message.type === "measure") {
    measuring.on = true;
    loopDelay.enable();
  } else if (message.type === "stop") {
    measuring.on = false;
    loopDelay.disable();
    figures.loopDelayP99Ms = loopDelay.percentile(99) / 1e6;
    stop.abort();
    void Promise.all(loops).then(async () => {
      await agent.close();
      parentPort?.postMessage(figures);
    });
  }
});
