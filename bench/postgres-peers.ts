/**
 * The peers of the Postgres benchmark, each doing no-op jobs on its own schema of the same
 * database: graphile-worker (its worker pool, unbatched: no local queue, no batched completion;
 * and, for context, with batched completion)
 * and pg-boss (fetch + complete cycles, its own primitives for claiming and finishing a job;
 * pickup through `work()` with LISTEN/NOTIFY enabled, its fastest wake-up).
 */
import { Logger as GraphileLogger, makeWorkerUtils, run as runGraphile } from "graphile-worker";
import pg from "pg";
import { PgBoss } from "pg-boss";

export interface QueueFigures {
  jobs: number;
  seconds: number;
  /** Enqueue-to-start latencies (ms) of jobs queued one at a time to an idle worker. */
  pickupMs: number[];
}

const silent = new GraphileLogger(() => () => undefined);
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `batchedCompletions`: graphile-worker's completeJobBatchDelay 0 (completions of one tick share
 * a statement; the worker moves on before it commits) instead of its default, unbatched.
 */
export async function graphileWorker(url: string, jobs: number, concurrency: number, pickups: number, batchedCompletions = false): Promise<QueueFigures> {
  // Our own pool, so a connection dropped later (the database is dropped after the run) is not an unhandled error.
  const pgPool = new pg.Pool({ connectionString: url, max: concurrency + 4 });
  pgPool.on("error", () => undefined);
  pgPool.on("connect", (client) => client.on("error", () => undefined));
  const options = { pgPool, schema: "graphile_bench", logger: silent };
  const utils = await makeWorkerUtils(options);
  try {
    await utils.migrate();
    await utils.addJobs(Array.from({ length: jobs }, () => ({ identifier: "noop", payload: {} })));
    let done = 0;
    let finished: () => void = () => undefined;
    const allDone = new Promise<void>((resolve) => (finished = resolve));
    let onStart: ((at: number) => void) | undefined;
    const started = performance.now();
    const runner = await runGraphile({
      ...options,
      concurrency,
      noHandleSignals: true,
      pollInterval: 2000,
      ...(batchedCompletions ? { preset: { worker: { completeJobBatchDelay: 0 } } } : {}),
      taskList: {
        noop: async () => {
          onStart?.(performance.now());
          done += 1;
          if (done === jobs) finished();
        },
      },
    });
    await allDone;
    const seconds = (performance.now() - started) / 1000;
    const pickupMs: number[] = [];
    for (let index = 0; index < pickups; index += 1) {
      await pause(20);
      const startedAt = new Promise<number>((resolve) => (onStart = resolve));
      const queuedAt = performance.now();
      await utils.addJob("noop", {});
      pickupMs.push((await startedAt) - queuedAt);
    }
    onStart = undefined;
    await runner.stop();
    return { jobs, seconds, pickupMs };
  } finally {
    await utils.release();
    await pgPool.end();
  }
}

export async function pgBoss(url: string, jobs: number, concurrency: number, pickups: number): Promise<QueueFigures> {
  const boss = new PgBoss({ connectionString: url, schema: "pgboss_bench", useListenNotify: true, max: concurrency + 4, supervise: false, schedule: false });
  boss.on("error", () => undefined);
  await boss.start();
  try {
    await boss.createQueue("noop", { notify: true });
    for (let offset = 0; offset < jobs; offset += 500) {
      await boss.insert("noop", Array.from({ length: Math.min(500, jobs - offset) }, () => ({ data: {} })));
    }
    let done = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (;;) {
          const [job] = await boss.fetch("noop");
          if (!job) return;
          await boss.complete("noop", job.id);
          done += 1;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    if (done !== jobs) throw new Error(`pg-boss completed ${done} of ${jobs} jobs`);
    let onStart: ((at: number) => void) | undefined;
    await boss.createQueue("pickup", { notify: true });
    await boss.work("pickup", { pollingIntervalSeconds: 0.5 }, async () => {
      onStart?.(performance.now());
    });
    await pause(1000);
    const pickupMs: number[] = [];
    for (let index = 0; index < pickups; index += 1) {
      await pause(20);
      const startedAt = new Promise<number>((resolve) => (onStart = resolve));
      const queuedAt = performance.now();
      await boss.send("pickup", {});
      pickupMs.push((await startedAt) - queuedAt);
    }
    return { jobs, seconds, pickupMs };
  } finally {
    await boss.stop({ graceful: false, timeout: 2000 });
  }
}
