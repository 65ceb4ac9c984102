/**
 * Two coordinators on one Postgres (a server of this test's own), three executors spread over
 * them, 300 jobs flowing. Mid-run one coordinator is SIGKILLed (its executors move to the
 * other), then Postgres itself is stopped with `-m immediate` (a crash: every connection cut, no
 * checkpoint) and started again. Each job's step appends its mark to a file on the host, so a job
 * that never ran or ran twice shows; every job must complete.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { UnavailableError, type JobView } from "../../src/protocol/index.ts";
import { PostgresDatabase } from "../../src/store/postgres/database.ts";
import { baseEnv, ENTRY, tempDir } from "../helpers/cluster.ts";
import { privatePostgresUnavailable, startPostgresServer, type PostgresServer } from "../helpers/postgres-server.ts";
import { printFigures, sleep, until } from "./helpers.ts";

const EXECUTOR_TOKEN = "executor-token-of-the-postgres-fault-test";
const API_TOKEN = "api-token-of-the-postgres-fault-test";
const JOBS = 300;
const LEASE = "6s";
const skip = privatePostgresUnavailable();

describe("fault: a coordinator killed and Postgres crashed while 300 jobs flow", { skip }, () => {
  let dir: string;
  let server: PostgresServer;
  let a: LocalCoordinator;
  let b: LocalCoordinator;
  const executors: ManagedProcess[] = [];
  const clients: ApiClient[] = [];

  const coordinator = (name: string, databaseUrl: string) =>
    startLocalCoordinator({
      entry: ENTRY,
      dataDir: join(dir, name),
      env: baseEnv,
      extraArgs: ["--database", databaseUrl, "--executor-token", EXECUTOR_TOKEN, "--api-token", API_TOKEN, "--lease-timeout", LEASE, "--log-level", "warn"],
    });

  const startExecutor = (name: string, urls: string[]) => {
    const executor = startAirlock(
      ENTRY,
      ["executor", "run", "--url", urls.join(","), "--runtime", "shell", "--max-jobs", "3", "--data", join(dir, name), "--heartbeat-interval", "1s", "--name", name, "--log-format", "json"],
      { env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: EXECUTOR_TOKEN }, logFile: join(dir, `${name}.log`) },
    );
    executors.push(executor);
    return executor;
  };

  before(async () => {
    if (skip) return;
    dir = await tempDir("airlock-pg-faults-");
    server = await startPostgresServer();
    const admin = new URL(server.url);
    const { default: pg } = await import("pg");
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    await client.query("CREATE DATABASE airlock_faults");
    await client.end();
    admin.pathname = "/airlock_faults";
    a = await coordinator("coordinator-a", admin.toString());
    b = await coordinator("coordinator-b", admin.toString());
  });

  after(async () => {
    await Promise.all(executors.map((executor) => executor.stop(5000)));
    await Promise.all([a?.stop(5000), b?.stop(5000)]);
    for (const client of clients) await client.close();
    await server?.destroy();
    if (dir && !process.env.AIRLOCK_KEEP_TEST_DIR) await rm(dir, { recursive: true, force: true });
  });

  async function marks(file: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    if (!existsSync(file)) return counts;
    for (const line of (await readFile(file, "utf8")).split("\n").filter(Boolean)) counts.set(line, (counts.get(line) ?? 0) + 1);
    return counts;
  }

  it("loses none and runs none twice; executors and coordinators ride out the Postgres restart", async (t) => {
    const apiA = new ApiClient({ url: a.url, token: API_TOKEN });
    const apiB = new ApiClient({ url: b.url, token: API_TOKEN });
    clients.push(apiA, apiB);
    const file = join(dir, "marks");
    const ids: number[] = [];
    for (let index = 0; index < JOBS; index += 1) {
      const spec = { isolation: "none", maxAttempts: 3, steps: [{ key: "mark", commands: [`echo job-${index} >> ${file}`, "sleep 0.1"] }] };
      ids.push((await (index % 2 ? apiA : apiB).submit(spec)).id);
    }
    const started = Date.now();
    startExecutor("exec-1", [a.url, b.url]);
    startExecutor("exec-2", [a.url, b.url]);
    startExecutor("exec-3", [b.url, a.url]);

    await until("60 jobs ran", async () => (await marks(file)).size >= 60 || undefined, 120_000, 100);
    a.child.kill("SIGKILL");
    await a.exited;
    const killedAt = Date.now();
    const atKill = (await marks(file)).size;

    await until("30 more jobs ran through the surviving coordinator", async () => (await marks(file)).size >= atKill + 30 || undefined, 120_000, 100);
    const crashAt = Date.now();
    const atCrash = (await marks(file)).size;
    await server.stop("immediate");
    await sleep(1000);
    await server.start();
    const downMs = Date.now() - crashAt;

    // Every job ends; the surviving coordinator answers throughout (503 while Postgres is down).
    const deadline = Date.now() + 240_000;
    let jobs: JobView[];
    for (;;) {
      jobs = await Promise.all(ids.map((id) => apiB.getJob(id))).catch(() => []);
      if (jobs.length === JOBS && jobs.every((job) => ["completed", "failed", "errored", "canceled"].includes(job.state))) break;
      if (Date.now() > deadline) throw new Error(`jobs still open: ${jobs.filter((job) => job.state !== "completed").length}`);
      await sleep(500);
    }
    const elapsedMs = Date.now() - started;
    const counts = await marks(file);
    const lost = ids.length - counts.size;
    const duplicates = [...counts].filter(([, n]) => n !== 1);
    const notCompleted = jobs.filter((job) => job.state !== "completed");
    const retried = jobs.filter((job) => job.attempt > 1);
    const after = (await marks(file)).size - atCrash;
    // What the outage looked like from the outside: requests refused while Postgres was down.
    const logs = await Promise.all([b.logFile, ...executors.map((executor) => executor.logFile)].map((path) => readFile(path, "utf8")));
    const outageLines = logs.flatMap((text) => text.split("\n")).filter((line) => /database unavailable|terminat|ECONNREFUSED|57P01/i.test(line));
    printFigures(t, "2 coordinators + Postgres crash, 300 jobs", {
      jobs: JOBS,
      completed: jobs.length - notCompleted.length,
      jobs_lost: lost,
      duplicates: duplicates.length,
      retried_attempts: retried.length,
      ran_before_kill: atKill,
      ran_before_pg_crash: atCrash,
      ran_after_pg_crash: after,
      coordinator_killed_ms_after_start: killedAt - started,
      pg_down_ms: downMs,
      outage_log_lines: outageLines.length,
      total_ms: elapsedMs,
    });
    assert.deepEqual(notCompleted.map((job) => [job.id, job.state, job.failureMessage]), [], "every job completed");
    assert.equal(lost, 0, "every job's step ran");
    assert.deepEqual(duplicates, [], "no step ran twice");
    assert.ok(after > 0, "jobs ran after Postgres came back");
    assert.ok(outageLines.length > 0, "the Postgres crash was felt (else this case proves nothing)");
    for (const executor of executors) assert.equal(executor.child.exitCode, null, `executor ${executor.logFile} still runs`);
    assert.equal(b.child.exitCode, null, "the surviving coordinator rode out the restart");
    const fresh = await apiB.submit({ isolation: "none", steps: [{ commands: ["true"] }] });
    await until("a job submitted after the restart completes", async () => (await apiB.getJob(fresh.id)).state === "completed" || undefined, 30_000);
  });

  it("a connection killed while a transaction holds it fails that transaction (503), not the process", async () => {
    const url = new URL(server.url);
    url.pathname = "/airlock_faults";
    const db = new PostgresDatabase(url.toString(), { poolSize: 2 });
    try {
      const failed = db.tx(async (client) => {
        const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
        await db.query("SELECT pg_terminate_backend($1)", [rows[0]?.pid]);
        // The socket error arrives now, between statements, while the pool does not listen.
        await sleep(300);
        await client.query("SELECT 1");
      });
      await assert.rejects(failed, UnavailableError);
      assert.deepEqual(await db.query("SELECT 1 AS one"), [{ one: 1 }], "the pool dropped the dead connection and goes on");
    } finally {
      await db.close();
    }
  });
});
