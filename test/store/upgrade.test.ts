/**
 * Upgrading a store made by schema version 1 (log entries and the attempts row written at claim,
 * a job's token cleared when its attempt ended) to the current schema keeps every job working:
 * a live attempt's token stays live, an ended one stays known and dead, ending the live attempt
 * records it, and the entries it never touched show as skipped; secret values leave the specs. On
 * both backends.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import pg from "pg";
import { SECRET_MASK } from "../../src/protocol/index.ts";
import type { Store } from "../../src/store/index.ts";
import { openPostgresStore } from "../../src/store/postgres/index.ts";
import { POSTGRES_MIGRATIONS } from "../../src/store/postgres/migrations.ts";
import { SqliteDatabase } from "../../src/store/sqlite/database.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import { SQLITE_MIGRATIONS } from "../../src/store/sqlite/migrations.ts";
import { ADMIN_URL, NO_POSTGRES } from "../helpers/postgres.ts";

const T0 = Date.UTC(2026, 0, 1);
const SPEC = JSON.stringify({ queue: "default", isolation: "none", maxAttempts: 1, steps: [{ key: "one", commands: ["true"], dir: ".", env: {} }] });
/** Specs of before secrets were stored apart held their values. */
const SECRET_SPEC = JSON.stringify({ ...(JSON.parse(SPEC) as object), secrets: { API_KEY: "old-plain-value" }, registryAuth: { "ghcr.io": { username: "bot", password: "old-registry-password" } } });

/** Rows as version 1 wrote them: job 1 processing (prepare done, step "one" pending), job 2 completed. */
const VERSION_1_ROWS = [
  "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)",
  `INSERT INTO schema_migrations (version, applied_at) VALUES (1, ${T0})`,
  `INSERT INTO jobs (id, queue, spec, state, attempt, max_attempts, isolation, isolation_rank, executor_name, token_hash, created_at, queued_at, started_at, lease_expires_at)
   VALUES (1, 'default', '${SPEC}', 'processing', 1, 1, 'none', 0, 'exec-a', 'live-token', ${T0}, ${T0}, ${T0 + 10}, ${T0 + 60_000})`,
  `INSERT INTO jobs (id, queue, spec, state, attempt, max_attempts, isolation, isolation_rank, executor_name, created_at, queued_at, started_at, finished_at)
   VALUES (2, 'default', '${SECRET_SPEC}', 'completed', 1, 1, 'none', 0, 'exec-b', ${T0}, ${T0}, ${T0 + 10}, ${T0 + 20})`,
  `INSERT INTO jobs (id, queue, spec, state, attempt, max_attempts, isolation, isolation_rank, created_at, queued_at)
   VALUES (3, 'default', '${SECRET_SPEC}', 'queued', 0, 1, 'none', 0, ${T0}, ${T0})`,
  `INSERT INTO attempts (job_id, attempt, executor_name, token_hash, started_at) VALUES (1, 1, 'exec-a', 'live-token', ${T0 + 10})`,
  `INSERT INTO attempts (job_id, attempt, executor_name, token_hash, started_at, finished_at, outcome) VALUES (2, 1, 'exec-b', 'ended-token', ${T0 + 10}, ${T0 + 20}, 'completed')`,
  `INSERT INTO entries (job_id, attempt, key, kind, idx, state, started_at, finished_at) VALUES (1, 1, 'prepare', 'prepare', 0, 'completed', ${T0 + 11}, ${T0 + 12})`,
  "INSERT INTO entries (job_id, attempt, key, kind, idx, state) VALUES (1, 1, 'one', 'step', 1, 'pending')",
  `INSERT INTO executors (name, hostname, version, runtime, isolation, queues, first_seen_at, last_heartbeat_at)
   VALUES ('exec-a', 'h', '0.0.9', 'shell', '["none"]', '["default"]', ${T0}, ${T0 + 10})`,
];

async function checkUpgraded(store: Store): Promise<void> {
  await store.migrate();
  // Secrets moved out of the specs: kept (unsealed, until a rotation seals them) for the queued job only.
  for (const id of [2, 3]) {
    const spec = (await store.jobs.getJob(id))?.job.spec;
    assert.deepEqual([spec?.secrets, spec?.registryAuth], [{ API_KEY: SECRET_MASK }, { "ghcr.io": { username: "bot", password: SECRET_MASK } }], `job ${id}'s spec is masked`);
  }
  assert.deepEqual(await store.secrets.forJob(2), []);
  const moved = (await store.secrets.forJob(3)).map((secret) => [secret.name, secret.keyId, Buffer.from(secret.ciphertext).toString("utf8")]);
  assert.deepEqual(moved, [["registryAuth.ghcr.io", "plaintext", "old-registry-password"], ["secrets.API_KEY", "plaintext", "old-plain-value"]]);
  const ref = { jobId: 1, attempt: 1, repository: null, executorName: "exec-a" };
  assert.deepEqual(await store.jobs.findAttempt("live-token"), { ...ref, live: true });
  assert.deepEqual(await store.jobs.findAttempt("ended-token"), { jobId: 2, attempt: 1, repository: null, executorName: "exec-b", live: false });
  const entries = async () => (await store.jobs.getJob(1))?.entries.map((entry) => [entry.key, entry.state]);
  assert.deepEqual(await entries(), [["prepare", "completed"], ["one", "pending"]]);
  assert.equal((await store.outputs.appendLog(ref, "one", 0, Buffer.from("still here"), T0 + 30)).size, 10);
  const ended = await store.jobs.finishAttempt(ref, "failed", "gave up", T0 + 40);
  assert.equal(ended.state, "failed");
  assert.equal((await store.jobs.findAttempt("live-token"))?.live, false);
  assert.deepEqual(await entries(), [["prepare", "completed"], ["one", "skipped"]]);
  const recorded = (await store.jobs.listExecutors()).find((executor) => executor.executorName === "exec-a");
  assert.deepEqual([recorded?.version, recorded?.protocolVersion], ["0.0.9", 1], "an executor recorded before protocol versions speaks protocol 1");
}

/** Runs one statement as the test server's admin. */
async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** An empty database of this name on the test server (dropped first if a past run left it); its URL. */
async function freshDatabase(name: string): Promise<URL> {
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL as string);
  url.pathname = `/${name}`;
  return url;
}


/** A SQLite file made the old way by `prepare`, then opened and migrated by this build and checked. */
async function upgradeSqlite(prepare: (old: SqliteDatabase) => void, check: (store: Store) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-upgrade-"));
  try {
    const path = join(dir, "airlock.db");
    const old = new SqliteDatabase(path);
    prepare(old);
    old.close();
    const store = createSqliteStore(path);
    try {
      await check(store);
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The same on a fresh Postgres database of this name. */
async function upgradePostgres(name: string, prepare: (client: pg.Client) => Promise<void>, check: (store: Store) => Promise<void>): Promise<void> {
  const url = await freshDatabase(name);
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await prepare(client);
  } finally {
    await client.end();
  }
  const store = await openPostgresStore(url.toString(), { poolSize: 2 });
  try {
    await check(store);
  } finally {
    await store.close();
  }
}

describe("store upgrade from schema version 1", () => {
  it("sqlite", async () => {
    await upgradeSqlite((old) => {
      old.db.exec(SQLITE_MIGRATIONS[0] as string);
      for (const sql of VERSION_1_ROWS) old.db.exec(sql);
    }, checkUpgraded);
  });

  const name = `airlock_upgrade_${process.pid}`;
  after(async () => {
    if (!NO_POSTGRES) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });

  it("postgres", async (t) => {
    if (NO_POSTGRES) return t.skip(NO_POSTGRES);
    await upgradePostgres(
      name,
      async (client) => {
        await client.query(POSTGRES_MIGRATIONS[0] as string);
        for (const sql of VERSION_1_ROWS) await client.query(sql);
        await client.query("SELECT setval('jobs_id_seq', 3)");
      },
      checkUpgraded,
    );
  });
});

describe("store upgrade of batch versions from schema version 6", () => {
  const SPEC6 = JSON.stringify({ name: "b", description: "", job: { isolation: "none", secrets: { TOKEN: "tok-value", LONG: "tok-value-longer" } }, steps: [] });
  const TEXT6 = "name: b\njob:\n  secrets: { TOKEN: tok-value, LONG: tok-value-longer }\n";
  const ROWS = [
    `INSERT INTO batches (id, name, description, latest_version, created_at, updated_at) VALUES (1, 'b', '', 1, ${T0}, ${T0})`,
    `INSERT INTO batch_versions (batch_id, version, spec, spec_text, source, created_at) VALUES (1, 1, '${SPEC6}', '${TEXT6}', 'server', ${T0})`,
  ];

  async function check(store: Store): Promise<void> {
    await store.migrate();
    const version = await store.batches.getVersion(1, 1);
    assert.deepEqual((version?.spec as { job: { secrets: unknown } }).job.secrets, { TOKEN: SECRET_MASK, LONG: SECRET_MASK });
    assert.equal(version?.specText, `name: b\njob:\n  secrets: { TOKEN: ${SECRET_MASK}, LONG: ${SECRET_MASK} }\n`);
    const moved = (await store.batches.versionSecrets(1, 1)).map((secret) => [secret.name, secret.keyId, Buffer.from(secret.ciphertext).toString("utf8")]);
    assert.deepEqual(moved, [["secrets.LONG", "plaintext", "tok-value-longer"], ["secrets.TOKEN", "plaintext", "tok-value"]]);
  }

  it("sqlite", async () => {
    await upgradeSqlite((old) => {
      old.db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
      SQLITE_MIGRATIONS.slice(0, 6).forEach((sql, index) => {
        old.db.exec(sql);
        old.db.exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (${index + 1}, ${T0})`);
      });
      for (const sql of ROWS) old.db.exec(sql);
    }, check);
  });

  const name = `airlock_upgrade6_${process.pid}`;
  after(async () => {
    if (!NO_POSTGRES) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });

  it("postgres", async (t) => {
    if (NO_POSTGRES) return t.skip(NO_POSTGRES);
    await upgradePostgres(
      name,
      async (client) => {
        await client.query("CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)");
        for (const [index, sql] of POSTGRES_MIGRATIONS.slice(0, 6).entries()) {
          await client.query(sql);
          await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [index + 1, T0]);
        }
        for (const sql of ROWS) await client.query(sql);
        await client.query("SELECT setval('batches_id_seq', 1)");
      },
      check,
    );
  });
});
