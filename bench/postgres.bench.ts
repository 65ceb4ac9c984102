/**
 * The Postgres store beside the Postgres job queues people already use, on one Postgres (the one
 * scripts/setup.d/30-postgres.sh starts, or AIRLOCK_TEST_DATABASE_URL), one machine, one run:
 * - throughput of no-op jobs, N concurrent workers: Airlock's store (claim + complete), Airlock
 *   over HTTP (simulated executors: dequeue + complete against a coordinator process),
 *   graphile-worker (unbatched) and pg-boss (fetch + complete);
 * - enqueue-to-start latency with an idle worker, p50/p95, for each;
 * - scale: many simulated executors (long-polling, heartbeat every 5 s) on one coordinator.
 * Each system gets a database of its own on the same server.
 */
import { rm } from "node:fs/promises";
import { tempDir } from "../test/helpers/cluster.ts";
import { dropTemplate, freshDatabase } from "../test/helpers/postgres.ts";
import { percentile, printTable } from "./lib.ts";
import { airlockHttp, airlockStore, startPostgresCoordinator } from "./postgres-airlock.ts";
import { graphileWorker, pgBoss, type QueueFigures } from "./postgres-peers.ts";
import { scale } from "./postgres-scale.ts";

const JOBS = Number(process.env.BENCH_PG_JOBS ?? 2000);
const ROUNDS = Number(process.env.BENCH_PG_ROUNDS ?? 3);
const WORKERS = Number(process.env.BENCH_PG_WORKERS ?? 8);
const PICKUPS = Number(process.env.BENCH_PG_PICKUPS ?? 50);
const EXECUTORS = Number(process.env.BENCH_PG_EXECUTORS ?? 500);
const SCALE_SECONDS = Number(process.env.BENCH_PG_SCALE_SECONDS ?? 30);
const SCALE_RATE = Number(process.env.BENCH_PG_SCALE_JOBS_PER_SECOND ?? 20);
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

/** Several rounds, the systems taking turns, so a burst of load on this shared machine hits all alike. */
async function queueComparison(): Promise<void> {
  const rounds: { store: QueueFigures & { pickupAcrossMs: number[] }; http: QueueFigures; graphile: QueueFigures; boss: QueueFigures }[] = [];
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
    const boss = await pgBoss(await database(), JOBS, WORKERS, PICKUPS);
    rounds.push({ store, http, graphile, boss });
    const rate = (figures: QueueFigures) => (figures.jobs / figures.seconds).toFixed(0);
    console.log(`round ${round + 1}: jobs/s store ${rate(store)}, http ${rate(http)}, graphile-worker ${rate(graphile)}, pg-boss ${rate(boss)}`);
  }
  const rate = (pick: (round: (typeof rounds)[number]) => QueueFigures) => percentile(rounds.map((round) => pick(round).jobs / pick(round).seconds), 50);
  const pickups = (pick: (round: (typeof rounds)[number]) => number[]) => rounds.flatMap(pick);
  const store = rate((round) => round.store);
  const http = rate((round) => round.http);
  const graphile = rate((round) => round.graphile);
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
      ["pg-boss 12 (fetch + complete; pickup: work + NOTIFY)", boss, store / boss, percentile(bossPickup, 50), percentile(bossPickup, 95)],
    ],
  );
  const best = Math.min(percentile(graphilePickup, 50), percentile(bossPickup, 50));
  console.log(
    `\nTargets: store/pg-boss ${(store / boss).toFixed(2)} (>= 1.0), store/graphile-worker ${(store / graphile).toFixed(2)} (>= 1.0), ` +
      `pickup p50 ${percentile(storePickup, 50).toFixed(2)} ms vs the peers' best ${best.toFixed(2)} ms (below both).\n`,
  );
}

async function scaleRun(): Promise<void> {
  const scaleUrl = await database();
  const scaleCoordinator = await startPostgresCoordinator(dir, scaleUrl, "coordinator-scale");
  try {
    const figures = await scale(scaleUrl, scaleCoordinator, EXECUTORS, SCALE_SECONDS, SCALE_RATE);
    console.log(`Scale: ${figures.executors} simulated executors on one coordinator for ${SCALE_SECONDS} s, ${figures.jobs} jobs queued at ${SCALE_RATE}/s.\n`);
    printTable(
      ["measure", "p50", "p99", "max", "count", "target"],
      [
        ["heartbeat round trip, ms", percentile(figures.heartbeatsMs, 50), percentile(figures.heartbeatsMs, 99), percentile(figures.heartbeatsMs, 100), figures.heartbeatsMs.length, "p99 <= 50"],
        ["dequeue: queued -> answered, ms", percentile(figures.dequeueMs, 50), percentile(figures.dequeueMs, 99), percentile(figures.dequeueMs, 100), figures.dequeueMs.length, ""],
        ["coordinator RSS, MiB (idle / peak)", figures.rssMiB.idle, figures.rssMiB.peak, Number.NaN, 1, ""],
        ["request errors", figures.errors, Number.NaN, Number.NaN, figures.errors, "0"],
        ["event-loop delay of the simulating process, ms", Number.NaN, figures.clientLoopDelayP99Ms, Number.NaN, 1, "(context)"],
      ],
    );
  } finally {
    await scaleCoordinator.stop(5000);
  }
}
