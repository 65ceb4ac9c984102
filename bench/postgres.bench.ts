/**
 * The Postgres store beside the Postgres job queues people already use, on one Postgres (the one
 * scripts/setup.d/30-postgres.sh starts, or AIRLOCK_TEST_DATABASE_URL), one machine, one run:
 * - throughput of no-op jobs, N concurrent workers: Airlock's store (claim + complete), Airlock
 *   over HTTP (simulated executors: dequeue + complete against a coordinator process),
 *   graphile-worker (unbatched; and, for context, with batched completions) and pg-boss (fetch +
 *   complete);
 * - enqueue-to-start latency with an idle worker, p50/p95, for each;
 * - scale: many simulated executors (long-polling, heartbeat every 5 s) on one coordinator.
 * Each system gets a database of its own on the same server.
 */
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tempDir } from "../test/helpers/cluster.ts";
import { dropTemplate, freshDatabase } from "../test/helpers/postgres.ts";
import { percentile, printTable } from "./lib.ts";
import { airlockHttp, airlockStore, startPostgresCoordinator } from "./postgres-airlock.ts";
import { graphileWorker, pgBoss, type QueueFigures } from "./postgres-peers.ts";
import { scale, type ScaleFigures } from "./postgres-scale.ts";

const JOBS = Number(process.env.BENCH_PG_JOBS ?? 2000);
const ROUNDS = Number(process.env.BENCH_PG_ROUNDS ?? 5);
const WORKERS = Number(process.env.BENCH_PG_WORKERS ?? 8);
const PICKUPS = Number(process.env.BENCH_PG_PICKUPS ?? 50);
const EXECUTORS = Number(process.env.BENCH_PG_EXECUTORS ?? 500);
const SCALE_SECONDS = Number(process.env.BENCH_PG_SCALE_SECONDS ?? 30);
const SCALE_RATE = Number(process.env.BENCH_PG_SCALE_JOBS_PER_SECOND ?? 20);
/** Worker threads the simulated executors are spread over (one per core here). */
const SCALE_THREADS = Number(process.env.BENCH_PG_SCALE_THREADS ?? 2);
const SCALE_ROUNDS = Number(process.env.BENCH_PG_SCALE_ROUNDS ?? 3);
/** "queue" or "scale" to run one half only. */
const ONLY = process.env.BENCH_PG_ONLY ?? "";

if (!process.env.AIRLOCK_TEST_DATABASE_URL) {
  console.log("skipped: AIRLOCK_TEST_DATABASE_URL is not set (run through scripts/bench.sh postgres, which starts a Postgres)");
  process.exit(0);
}

const dir = await tempDir("airlock-bench-pg-");
const databases: (() => Promise<void>)[] = [];
async function database(): Promise<string> {
  const { url, drop } = await freshDatabase();
  databases.push(drop);
  return url;
}

try {
  if (ONLY !== "scale") await queueComparison();
  if (ONLY !== "queue") await scaleRun();
} finally {
  for (const drop of databases) await drop().catch(() => undefined);
  await dropTemplate();
  await rm(dir, { recursive: true, force: true });
}

/** The 1-minute load average: the machine is shared, and the figures move with it. */
function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ")[0] ?? "?";
}

/** Several rounds, the systems taking turns, so a burst of load on this shared machine hits all alike. */
async function queueComparison(): Promise<void> {
  const rounds: { store: QueueFigures & { pickupAcrossMs: number[] }; http: QueueFigures; graphile: QueueFigures; graphileBatched: QueueFigures; boss: QueueFigures }[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const store = await airlockStore(await database(), JOBS, WORKERS, PICKUPS);
    const httpUrl = await database();
    const coordinator = await startPostgresCoordinator(dir, httpUrl, `coordinator-http-${round}`);
    let http: QueueFigures;
    try {
      http = await airlockHttp(httpUrl, coordinator, JOBS, WORKERS, PICKUPS);
    } finally {
      await coordinator.stop(5000);
    }
    const graphile = await graphileWorker(await database(), JOBS, WORKERS, PICKUPS);
    const graphileBatched = await graphileWorker(await database(), JOBS, WORKERS, 0, true);
    const boss = await pgBoss(await database(), JOBS, WORKERS, PICKUPS);
    rounds.push({ store, http, graphile, graphileBatched, boss });
    const rate = (figures: QueueFigures) => (figures.jobs / figures.seconds).toFixed(0);
    console.log(
      `round ${round + 1} (load ${loadAverage()}): jobs/s store ${rate(store)}, http ${rate(http)}, graphile-worker ${rate(graphile)}, ` +
        `graphile-worker batched completions ${rate(graphileBatched)}, pg-boss ${rate(boss)}`,
    );
  }
  const rate = (pick: (round: (typeof rounds)[number]) => QueueFigures) => percentile(rounds.map((round) => pick(round).jobs / pick(round).seconds), 50);
  const pickups = (pick: (round: (typeof rounds)[number]) => number[]) => rounds.flatMap(pick);
  const store = rate((round) => round.store);
  const http = rate((round) => round.http);
  const graphile = rate((round) => round.graphile);
  const graphileBatched = rate((round) => round.graphileBatched);
  const boss = rate((round) => round.boss);
  const storePickup = pickups((round) => round.store.pickupMs);
  const acrossPickup = pickups((round) => round.store.pickupAcrossMs);
  const httpPickup = pickups((round) => round.http.pickupMs);
  const graphilePickup = pickups((round) => round.graphile.pickupMs);
  const bossPickup = pickups((round) => round.boss.pickupMs);
  console.log(
    `\nQueue: ${JOBS} no-op jobs per round, ${WORKERS} concurrent workers, median of ${ROUNDS} rounds; ` +
      `pickup: ${PICKUPS} jobs per round queued one at a time to an idle worker (all rounds pooled).\n`,
  );
  printTable(
    ["system", "jobs/s", "Airlock store / it", "pickup p50 ms", "pickup p95 ms"],
    [
      ["Airlock store (claim + complete)", store, 1, percentile(storePickup, 50), percentile(storePickup, 95)],
      ["Airlock store, pickup across two coordinators", Number.NaN, Number.NaN, percentile(acrossPickup, 50), percentile(acrossPickup, 95)],
      ["Airlock over HTTP (dequeue + complete)", http, store / http, percentile(httpPickup, 50), percentile(httpPickup, 95)],
      ["graphile-worker 0.18 (unbatched)", graphile, store / graphile, percentile(graphilePickup, 50), percentile(graphilePickup, 95)],
      ["graphile-worker 0.18, batched completions (context)", graphileBatched, store / graphileBatched, Number.NaN, Number.NaN],
      ["pg-boss 12 (fetch + complete; pickup: work + NOTIFY)", boss, store / boss, percentile(bossPickup, 50), percentile(bossPickup, 95)],
    ],
  );
  const best = Math.min(percentile(graphilePickup, 50), percentile(bossPickup, 50));
  console.log(
    `\nTargets: store/pg-boss ${(store / boss).toFixed(2)} (>= 1.0), store/graphile-worker ${(store / graphile).toFixed(2)} (>= 1.0), ` +
      `pickup p50 ${percentile(storePickup, 50).toFixed(2)} ms vs the peers' best ${best.toFixed(2)} ms (below both).\n`,
  );
}

/** Several scale rounds (a fresh coordinator each): the tail moves with the machine's load, so each round's p99 is shown with it. */
async function scaleRun(): Promise<void> {
  const all: ScaleFigures[] = [];
  for (let round = 0; round < SCALE_ROUNDS; round += 1) {
    const scaleUrl = await database();
    const scaleCoordinator = await startPostgresCoordinator(dir, scaleUrl, `coordinator-scale-${round}`);
    try {
      const load = loadAverage();
      const figures = await scale(scaleUrl, scaleCoordinator, EXECUTORS, SCALE_SECONDS, SCALE_RATE, SCALE_THREADS);
      all.push(figures);
      console.log(
        `scale round ${round + 1} (load ${load} -> ${loadAverage()}): heartbeat p99 ${percentile(figures.heartbeatsMs, 99).toFixed(1)} ms, ` +
          `GET /healthz p99 ${percentile(figures.probeMs, 99).toFixed(1)} ms, dequeue p99 ${percentile(figures.dequeueMs, 99).toFixed(1)} ms`,
      );
    } finally {
      await scaleCoordinator.stop(5000);
    }
  }
  const pooled = (pick: (figures: ScaleFigures) => number[]) => all.flatMap(pick);
  const heartbeats = pooled((figures) => figures.heartbeatsMs);
  const dequeues = pooled((figures) => figures.dequeueMs);
  const probes = pooled((figures) => figures.probeMs);
  const first = all[0] as ScaleFigures;
  console.log(
    `\nScale: ${first.executors} simulated executors (over ${first.threads} threads) on one coordinator, ${SCALE_ROUNDS} rounds of ${SCALE_SECONDS} s, ` +
      `jobs queued at ${SCALE_RATE}/s; all rounds pooled (p99 of each round: ${all.map((figures) => percentile(figures.heartbeatsMs, 99).toFixed(1)).join(", ")} ms).\n`,
  );
  printTable(
    ["measure", "p50", "p99", "max", "count", "target"],
    [
      ["heartbeat round trip, ms", percentile(heartbeats, 50), percentile(heartbeats, 99), percentile(heartbeats, 100), heartbeats.length, "p99 <= 50"],
      ["dequeue: queued -> answered, ms", percentile(dequeues, 50), percentile(dequeues, 99), percentile(dequeues, 100), dequeues.length, ""],
      ["coordinator RSS, MiB (idle / peak), highest of the rounds", Math.max(...all.map((figures) => figures.rssMiB.idle)), Math.max(...all.map((figures) => figures.rssMiB.peak)), Number.NaN, "", ""],
      ["request errors", String(all.reduce((sum, figures) => sum + figures.errors, 0)), "", "", "", "0"],
      ["GET /healthz round trip (no work), ms", percentile(probes, 50), percentile(probes, 99), percentile(probes, 100), probes.length, "(context)"],
      ["event-loop delay of the simulating threads (worst p99), ms", "", Math.max(...all.map((figures) => figures.clientLoopDelayP99Ms)), "", "", "(context)"],
    ],
  );
}
