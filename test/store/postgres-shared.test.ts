/**
 * What only a shared backend promises: two stores (two coordinators) on one Postgres see each
 * other's changes, never hand out one job twice, reap each lapsed lease once, and keep listening
 * after their listening connection is killed.
 */
import assert from "node:assert/strict";
import { after, afterEach, beforeEach, describe, it } from "node:test";
import pg from "pg";
import { UnavailableError, ValidationError } from "../../src/protocol/index.ts";
import { openStore } from "../../src/store/index.ts";
import { openPostgresStore, type PostgresStore } from "../../src/store/postgres/index.ts";
import type { StoreChange } from "../../src/store/index.ts";
import { dropTemplate, freshDatabase, NO_POSTGRES } from "../helpers/postgres.ts";
import { executor, spec } from "./conformance.ts";

const T0 = Date.UTC(2026, 0, 1);

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("postgres: two stores on one database", { skip: NO_POSTGRES }, () => {
  let a: PostgresStore;
  let b: PostgresStore;
  let url: string;
  let drop: () => Promise<void>;

  beforeEach(async () => {
    ({ url, drop } = await freshDatabase());
    a = await openPostgresStore(url, { poolSize: 4 });
    b = await openPostgresStore(url, { poolSize: 4 });
  });
  afterEach(async () => {
    await a.close();
    await b.close();
    await drop();
  });
  after(dropTemplate);

  it("announces jobs queued and logs appended by one store to the other", async () => {
    const seen: StoreChange[] = [];
    a.onChange((change) => seen.push(change));
    const job = await b.jobs.enqueue({ spec: spec({ queue: "shared" }), ref: null, commit: null }, T0);
    await until(() => seen.some((change) => change.kind === "queued" && change.queue === "shared"), "the queued change");
    const claimed = await b.jobs.claim({ executor: executor("exec-b", { queues: ["shared"] }), tokenHash: "t1", leaseMs: 20_000 }, T0 + 1);
    assert.equal(claimed?.id, job.id);
    seen.length = 0;
    await b.outputs.appendLog({ jobId: job.id, attempt: 1, repository: null, executorName: "exec-b" }, "one", 0, Buffer.from("hi"), T0 + 2);
    await until(() => seen.some((change) => change.kind === "job" && change.jobId === job.id), "the job change");
    assert.equal(Buffer.from(await a.outputs.readLog(job.id, 1, "one", 0, 10)).toString(), "hi");
  });

  it("hands each job to one claimer across both stores", async () => {
    for (let index = 0; index < 40; index += 1) await (index % 2 ? a : b).jobs.enqueue({ spec: spec(), ref: null, commit: null }, T0 + index);
    const claims = await Promise.all(
      Array.from({ length: 80 }, (_, index) => (index % 2 ? a : b).jobs.claim({ executor: executor(`exec-${index}`), tokenHash: `tok-${index}`, leaseMs: 20_000 }, T0 + 100)),
    );
    const ids = claims.filter((job) => job !== undefined).map((job) => job.id);
    assert.equal(ids.length, 40);
    assert.equal(new Set(ids).size, 40);
  });

  it("reaps each lapsed lease once when both stores sweep at once", async () => {
    for (let index = 0; index < 20; index += 1) {
      await a.jobs.enqueue({ spec: spec({ maxAttempts: 3 }), ref: null, commit: null }, T0);
      await a.jobs.claim({ executor: executor(`exec-${index}`), tokenHash: `lapse-${index}`, leaseMs: 1000 }, T0);
    }
    const [fromA, fromB] = await Promise.all([a.jobs.reapExpiredLeases(T0 + 5000), b.jobs.reapExpiredLeases(T0 + 5000)]);
    const reaped = [...fromA, ...fromB].map((job) => job.id);
    assert.equal(reaped.length, 20);
    assert.equal(new Set(reaped).size, 20);
    const jobs = await a.jobs.listJobs({ limit: 100 });
    assert.ok(jobs.every((job) => job.state === "queued" && job.attempt === 1));
  });

  it("listens again after its connection is killed, and announces what was queued meanwhile", async () => {
    const seen: StoreChange[] = [];
    a.onChange((change) => seen.push(change));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      const killed = await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'airlock-listen' AND datname = current_database()");
      assert.ok((killed.rowCount ?? 0) >= 2, "both stores' listeners were found");
      await b.jobs.enqueue({ spec: spec({ queue: "during-outage" }), ref: null, commit: null }, T0);
      await until(() => seen.some((change) => change.kind === "queued" && change.queue === "during-outage"), "the change queued while the listener was down");
      await until(() => a.listening, "the listener to reconnect");
      await b.jobs.enqueue({ spec: spec({ queue: "after-outage" }), ref: null, commit: null }, T0);
      await until(() => seen.some((change) => change.kind === "queued" && change.queue === "after-outage"), "a change after the reconnect");
    } finally {
      await admin.end();
    }
  });
});

describe("postgres: bad locations", () => {
  it("refuses a URL that is not postgres://, naming the flag", async () => {
    await assert.rejects(openStore({ databaseUrl: "mysql://user@127.0.0.1/db", sqlitePath: "/nonexistent" }), (error: unknown) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /--database: only postgres:\/\//);
      return true;
    });
  });

  it("says which database it cannot reach", async () => {
    await assert.rejects(openStore({ databaseUrl: "postgres://airlock@127.0.0.1:1/airlock", sqlitePath: "/nonexistent" }), (error: unknown) => {
      assert.ok(error instanceof UnavailableError);
      assert.match(error.message, /cannot connect to the database at 127\.0\.0\.1:1/);
      return true;
    });
  });
});
