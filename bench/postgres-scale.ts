/**
 * Many executors on one coordinator: `count` simulated executors (light HTTP clients) each hold a
 * long-polling dequeue and heartbeat every 5 s (staggered), while jobs are queued at a steady rate;
 * an executor that gets a job completes it and polls again. Measured: heartbeat round trips,
 * dequeue latency (job queued -> dequeue answered with it), the coordinator's RSS; for context,
 * the round trip of a request that does no work (GET /healthz) under the same load, and the
 * event-loop delay of the simulating threads.
 *
 * The fleet is spread over worker threads (postgres-scale-worker.ts): one event loop carrying 500
 * clients delays replies by itself, which would be counted against the coordinator.
 */
import { Worker } from "node:worker_threads";
import { openPostgresStore } from "../src/store/postgres/index.ts";
import type { LocalCoordinator } from "../src/cli/local-cluster.ts";
import { rssMiB } from "./lib.ts";
import { noopSpec } from "./postgres-airlock.ts";
import type { WorkerFigures, WorkerInput } from "./postgres-scale-worker.ts";

export interface ScaleFigures {
  executors: number;
  threads: number;
  heartbeatsMs: number[];
  dequeueMs: number[];
  probeMs: number[];
  jobs: number;
  rssMiB: { idle: number; peak: number };
  errors: number;
  /** Highest p99 event-loop delay of the simulating threads, ms: how much of a tail is the fleet's own. */
  clientLoopDelayP99Ms: number;
}

const HEARTBEAT_MS = 5000;
const PROBE_MS = 50;

export async function scale(url: string, coordinator: LocalCoordinator, count: number, seconds: number, jobsPerSecond: number, threads: number): Promise<ScaleFigures> {
  const store = await openPostgresStore(url, { poolSize: 2 });
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(coordinator.child.pid as number))), 250);
  const idle = rssMiB(coordinator.child.pid as number);
  const per = Math.ceil(count / threads);
  const workers = Array.from({ length: threads }, (_, thread) => {
    const first = thread * per;
    const input: WorkerInput = { url: coordinator.url, first, count: Math.max(0, Math.min(per, count - first)), fleet: count, heartbeatMs: HEARTBEAT_MS, probeMs: thread === 0 ? PROBE_MS : 0 };
    return new Worker(new URL("./postgres-scale-worker.ts", import.meta.url), { workerData: input });
  });
  const results = workers.map(
    (worker) =>
      new Promise<WorkerFigures>((resolve, reject) => {
        worker.once("message", (figures: WorkerFigures) => resolve(figures));
        worker.once("error", reject);
      }),
  );
  let jobs = 0;
  try {
    // Let every executor start polling and heartbeating, then measure.
    await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS + 2000));
    for (const worker of workers) worker.postMessage({ type: "measure" });
    const until = Date.now() + seconds * 1000;
    while (Date.now() < until) {
      await store.jobs.enqueue({ spec: noopSpec("scale", { QUEUED_AT: String(Date.now()) }), ref: null, commit: null }, Date.now());
      jobs += 1;
      await new Promise((resolve) => setTimeout(resolve, 1000 / jobsPerSecond));
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  } finally {
    for (const worker of workers) worker.postMessage({ type: "stop" });
    clearInterval(sampler);
  }
  const figures = await Promise.all(results);
  await Promise.all(workers.map((worker) => worker.terminate()));
  await store.close();
  return {
    executors: count,
    threads,
    heartbeatsMs: figures.flatMap((figure) => figure.heartbeatsMs),
    dequeueMs: figures.flatMap((figure) => figure.dequeueMs),
    probeMs: figures.flatMap((figure) => figure.probeMs),
    jobs,
    rssMiB: { idle, peak },
    errors: figures.reduce((sum, figure) => sum + figure.errors, 0),
    clientLoopDelayP99Ms: Math.max(...figures.map((figure) => figure.loopDelayP99Ms)),
  };
}
