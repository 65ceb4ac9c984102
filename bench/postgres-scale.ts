/**
 * Many executors on one coordinator: `count` simulated executors (light HTTP clients) each hold a
 * long-polling dequeue and heartbeat every 5 s (staggered), while jobs are queued at a steady rate;
 * an executor that gets a job completes it and polls again. Measured: heartbeat round trips,
 * dequeue latency (job queued -> dequeue answered with it), the coordinator's RSS.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Agent } from "undici";
import { openPostgresStore } from "../src/store/postgres/index.ts";
import type { LocalCoordinator } from "../src/cli/local-cluster.ts";
import { rssMiB } from "./lib.ts";
import { noopSpec, SimulatedExecutor } from "./postgres-airlock.ts";

export interface ScaleFigures {
  executors: number;
  heartbeatsMs: number[];
  dequeueMs: number[];
  jobs: number;
  rssMiB: { idle: number; peak: number };
  errors: number;
  /** p99 event-loop delay of this (client) process, ms: how much of a tail is the fleet's own. */
  clientLoopDelayP99Ms: number;
}

const HEARTBEAT_MS = 5000;

export async function scale(url: string, coordinator: LocalCoordinator, count: number, seconds: number, jobsPerSecond: number): Promise<ScaleFigures> {
  const agent = new Agent({ connections: null, keepAliveTimeout: 60_000, headersTimeout: 60_000 });
  const store = await openPostgresStore(url, { poolSize: 2 });
  const stop = new AbortController();
  const heartbeatsMs: number[] = [];
  const dequeueMs: number[] = [];
  let errors = 0;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(coordinator.child.pid as number))), 250);
  const executors = Array.from({ length: count }, (_, index) => new SimulatedExecutor(coordinator.url, agent, `sim-${index}`, "scale"));
  const idle = rssMiB(coordinator.child.pid as number);
  const measuring = { on: false };

  const loops = executors.map(async (executor, index) => {
    // Stagger the fleet over one heartbeat interval, as executors started at different times are.
    await new Promise((resolve) => setTimeout(resolve, (index * HEARTBEAT_MS) / count));
    const beat = setInterval(() => {
      const sent = performance.now();
      executor
        .heartbeat([])
        .then(() => measuring.on && heartbeatsMs.push(performance.now() - sent))
        .catch(() => (errors += 1));
    }, HEARTBEAT_MS);
    try {
      while (!stop.signal.aborted) {
        try {
          const job = await executor.dequeue(25_000, stop.signal);
          if (!job) continue;
          if (measuring.on) dequeueMs.push(Date.now() - Number(job.spec.steps[0]?.env.QUEUED_AT));
          await executor.complete(job);
        } catch (error) {
          if (!stop.signal.aborted) {
            errors += 1;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
          void error;
        }
      }
    } finally {
      clearInterval(beat);
    }
  });

  // Let every executor start polling and heartbeating, then measure.
  await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS + 2000));
  measuring.on = true;
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  let jobs = 0;
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    await store.jobs.enqueue({ spec: noopSpec("scale", { QUEUED_AT: String(Date.now()) }), ref: null, commit: null }, Date.now());
    jobs += 1;
    await new Promise((resolve) => setTimeout(resolve, 1000 / jobsPerSecond));
  }
  await new Promise((resolve) => setTimeout(resolve, 1000));
  measuring.on = false;
  loopDelay.disable();
  stop.abort();
  await Promise.all(loops);
  clearInterval(sampler);
  await agent.close();
  await store.close();
  return { executors: count, heartbeatsMs, dequeueMs, jobs, rssMiB: { idle, peak }, errors, clientLoopDelayP99Ms: loopDelay.percentile(99) / 1e6 };
}
