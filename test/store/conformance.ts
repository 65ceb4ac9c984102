/**
 * The store conformance suite: every backend runs these unchanged (sqlite.test.ts,
 * postgres.test.ts). Time is passed in, so lease expiry needs no sleeping.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ConflictError, JobSpecInput, LeaseLostError, NotFoundError, type ExecutorIdentity, type JobSpecInput as SpecInput } from "../../src/protocol/index.ts";
import type { AttemptRef, JobRecord, Store, StoreChange } from "../../src/store/index.ts";
import { batchStoreConformance } from "./batch-conformance.ts";
import { indexStoreConformance } from "./index-conformance.ts";
import { secretStoreConformance } from "./secret-conformance.ts";

export interface StoreFactory {
  /** A fresh, migrated, empty store. */
  create(): Promise<Store>;
  /** Called after each test with the store it created. */
  destroy(store: Store): Promise<void>;
}

const T0 = Date.UTC(2026, 0, 1);
const LEASE = 20_000;

export function executor(name: string, overrides: Partial<ExecutorIdentity> = {}): ExecutorIdentity {
  return { executorName: name, hostname: "host", version: "test", protocolVersion: 1, runtime: "shell", isolation: ["none"], network: "internet", queues: ["default"], ...overrides };
}

export function spec(overrides: Partial<SpecInput> = {}) {
  return JobSpecInput.parse({ isolation: "none", steps: [{ key: "one", commands: ["true"] }, { key: "two", commands: ["true"] }], ...overrides });
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* bytes(...parts: Buffer[]): AsyncIterable<Uint8Array> {
  for (const part of parts) yield part;
}

export function storeConformance(backend: string, factory: StoreFactory): void {
  batchStoreConformance(backend, factory);
  indexStoreConformance(backend, factory);
  secretStoreConformance(backend, factory);
  describe(`JobStore conformance: ${backend}`, () => {
    let store: Store;
    let tokens = 0;

    beforeEach(async () => {
      store = await factory.create();
    });
    afterEach(async () => {
      await factory.destroy(store);
    });

    async function enqueue(overrides: Partial<SpecInput> = {}, now = T0) {
      return store.jobs.enqueue({ spec: spec(overrides), ref: null, commit: null }, now);
    }

    async function claim(name = "exec-a", now = T0 + 10, overrides: Partial<ExecutorIdentity> = {}): Promise<{ ref: AttemptRef; token: string } | undefined> {
      tokens += 1;
      const token = `token-${backend}-${tokens}-${Math.random()}`;
      const job = await store.jobs.claim({ executor: executor(name, overrides), tokenHash: token, leaseMs: LEASE }, now);
      if (!job) return undefined;
      return { ref: { jobId: job.id, attempt: job.attempt, repository: job.repository, executorName: name }, token };
    }

    it("migrates idempotently and round-trips a job", async () => {
      await store.migrate();
      const job = await enqueue({ queue: "q1", maxAttempts: 2 });
      const detail = await store.jobs.getJob(job.id);
      assert.equal(detail?.job.state, "queued");
      assert.equal(detail?.job.queue, "q1");
      assert.equal(detail?.job.attempt, 0);
      assert.equal(detail?.job.maxAttempts, 2);
      assert.deepEqual(detail?.job.spec, spec({ queue: "q1", maxAttempts: 2 }));
      assert.equal(await store.jobs.getJob(job.id + 1000), undefined);
    });

    it("announces queued jobs", async () => {
      const changes: StoreChange[] = [];
      const stop = store.onChange((change) => changes.push(change));
      await enqueue({ queue: "announced" });
      await new Promise((resolve) => setTimeout(resolve, 200));
      stop();
      assert.ok(changes.some((change) => change.kind === "queued" && change.queue === "announced" && change.isolation === "none"));
    });

    it("claims from the first queue of a preference order that has a job, oldest first there", async () => {
      const a1 = await enqueue({ queue: "a" }, T0);
      const b1 = await enqueue({ queue: "b" }, T0 + 1);
      const b2 = await enqueue({ queue: "b" }, T0 + 2);
      const vmInC = await enqueue({ queue: "c", isolation: "vm" }, T0 + 3);
      const take = async (preference: string[]) => {
        const job = await store.jobs.claim(
          { executor: executor(`exec-${Math.random()}`, { queues: ["a", "b", "c"] }), tokenHash: `pref-${Math.random()}`, leaseMs: LEASE, preference },
          T0 + 10,
        );
        return job?.id;
      };
      assert.equal(await take(["c", "b", "a"]), b1.id, "c holds only a job this executor cannot isolate; b is next");
      assert.equal(await take(["b", "a"]), b2.id);
      assert.equal(await take(["b", "c", "a"]), a1.id, "b is empty now");
      assert.equal(await take(["b", "a"]), undefined);
      assert.equal((await store.jobs.getJob(vmInC.id))?.job.state, "queued");
    });

    it("never gives a job more network than it asked for, nor an executor offering less a job that needs it", async () => {
      const online = await enqueue({}, T0);
      const offline = await enqueue({ network: "none" }, T0 + 1);
      assert.equal(online.network, "internet", "jobs ask for the internet by default");
      assert.equal(offline.network, "none");
      const none = await claim("exec-offline", T0 + 10, { network: "none" });
      assert.equal(none?.ref.jobId, offline.id, "an executor without network skips the older job that needs it");
      assert.equal(await claim("exec-offline-2", T0 + 11, { network: "none" }), undefined);
      const internet = await claim("exec-online", T0 + 12, { network: "internet" });
      assert.equal(internet?.ref.jobId, online.id);
      const later = await enqueue({ network: "none" }, T0 + 13);
      assert.equal((await claim("exec-online", T0 + 14, { network: "internet" }))?.ref.jobId, later.id, "an executor with network runs jobs without it (giving them none)");
      assert.deepEqual((await store.jobs.getJob(offline.id))?.job.spec.network, { mode: "none" });
    });

    it("claims the oldest job of the executor's queues that it can isolate, once", async () => {
      const other = await enqueue({ queue: "other" }, T0);
      const strong = await enqueue({ isolation: "vm" }, T0 + 1);
      const first = await enqueue({}, T0 + 2);
      const second = await enqueue({}, T0 + 3);
      const claimed = await claim();
      assert.equal(claimed?.ref.jobId, first.id, "skips other queues and jobs needing more isolation");
      assert.equal(claimed?.ref.attempt, 1);
      assert.equal((await claim())?.ref.jobId, second.id);
      assert.equal(await claim(), undefined);
      const vm = await claim("exec-vm", T0 + 20, { isolation: ["none", "namespace", "container", "gvisor", "vm"] });
      assert.equal(vm?.ref.jobId, strong.id);
      const detail = await store.jobs.getJob(first.id);
      assert.equal(detail?.job.state, "processing");
      assert.equal(detail?.job.executorName, "exec-a");
      assert.deepEqual(detail?.entries.map((entry) => [entry.key, entry.state]), [["prepare", "pending"], ["one", "pending"], ["two", "pending"]]);
      assert.equal((await store.jobs.getJob(other.id))?.job.state, "queued");
    });

    it("never hands one job to two concurrent claims", async () => {
      for (let index = 0; index < 10; index += 1) await enqueue({}, T0 + index);
      const results = await Promise.all(Array.from({ length: 30 }, (_, index) => claim(`exec-${index}`)));
      const ids = results.filter((result) => result !== undefined).map((result) => result.ref.jobId);
      assert.equal(ids.length, 10);
      assert.equal(new Set(ids).size, 10);
    });

    it("hands each job to one of many claims of one queue arriving at once, oldest first", async () => {
      const jobs: JobRecord[] = [];
      for (let index = 0; index < 5; index += 1) jobs.push(await enqueue({ queue: "q" }, T0 + index));
      await enqueue({ queue: "elsewhere" }, T0);
      const names = Array.from({ length: 8 }, (_, index) => `exec-${index}`);
      // Executors heard from just now (a heartbeat), as executors polling in a loop are.
      for (const name of names) await store.jobs.heartbeat(executor(name, { queues: ["q"] }), [], LEASE, T0 + 9);
      const tokens = names.map((name) => `token-${backend}-${name}-${Math.random()}`);
      const claimed = await Promise.all(
        names.map((name, index) =>
          store.jobs.claim({ executor: executor(name, { queues: ["q"] }), tokenHash: tokens[index]!, leaseMs: LEASE, preference: ["q"] }, T0 + 10),
        ),
      );
      const got = claimed.flatMap((job, index) => (job ? [{ job, index }] : []));
      assert.deepEqual(got.map(({ job }) => job.id).sort((a, b) => a - b), jobs.map((job) => job.id), "every job of the queue once, nothing else");
      for (const { job, index } of got) {
        assert.deepEqual([job.state, job.executorName, job.attempt, job.leaseExpiresAt], ["processing", names[index], 1, T0 + 10 + LEASE]);
        assert.deepEqual(await store.jobs.findAttempt(tokens[index]!), { jobId: job.id, attempt: 1, repository: null, executorName: names[index], live: true });
      }
      assert.equal(claimed.filter((job) => job === undefined).length, 3);
      assert.equal(await store.jobs.claim({ executor: executor("exec-0", { queues: ["q"] }), tokenHash: "late", leaseMs: LEASE, preference: ["q"] }, T0 + 11), undefined);
    });

    it("resolves job tokens to live or ended attempts", async () => {
      await enqueue();
      const claimed = await claim();
      assert.ok(claimed);
      const live = await store.jobs.findAttempt(claimed.token);
      assert.deepEqual(live, { ...claimed.ref, live: true });
      assert.equal(await store.jobs.findAttempt("no-such-token"), undefined);
      await store.jobs.finishAttempt(claimed.ref, "completed", null, T0 + 100);
      assert.equal((await store.jobs.findAttempt(claimed.token))?.live, false);
    });

    it("resolves a superseded attempt's token as ended once the job was requeued and claimed again", async () => {
      await enqueue({ maxAttempts: 2 });
      const first = await claim("exec-a", T0 + 10);
      assert.ok(first);
      await store.jobs.finishAttempt(first.ref, "errored", "sandbox broke", T0 + 20);
      const second = await claim("exec-b", T0 + 30);
      assert.ok(second);
      assert.deepEqual(await store.jobs.findAttempt(first.token), { ...first.ref, live: false }, "the first attempt's token is known, and dead");
      assert.deepEqual(await store.jobs.findAttempt(second.token), { ...second.ref, live: true });
      await store.jobs.finishAttempt(second.ref, "completed", null, T0 + 40);
      assert.deepEqual(await store.jobs.findAttempt(second.token), { ...second.ref, live: false });
      const reapedJob = await enqueue({ maxAttempts: 1 }, T0 + 50);
      const lapsed = await claim("exec-c", T0 + 60);
      assert.equal(lapsed?.ref.jobId, reapedJob.id);
      await store.jobs.reapExpiredLeases(T0 + 60 + LEASE + 1);
      assert.deepEqual(await store.jobs.findAttempt(lapsed.token), { ...lapsed.ref, live: false }, "a reaped attempt's token is known, and dead");
    });

    it("lists every entry of a partially run job: as recorded, the rest pending, then skipped once the attempt ended", async () => {
      const job = await enqueue({ steps: [{ key: "one", commands: ["true"] }, { key: "two", commands: ["true"] }, { key: "three", commands: ["true"] }] });
      const states = async () => (await store.jobs.getJob(job.id))?.entries.map((entry) => [entry.key, entry.kind, entry.index, entry.state]);
      assert.deepEqual(await states(), [["prepare", "prepare", 0, "pending"], ["one", "step", 1, "pending"], ["two", "step", 2, "pending"], ["three", "step", 3, "pending"]]);
      const claimed = await claim();
      assert.ok(claimed);
      const { ref } = claimed;
      await store.jobs.startEntry(ref, "prepare", T0 + 20);
      await store.jobs.finishEntry(ref, "prepare", { state: "completed", exitCode: null, durationMs: 5 }, T0 + 25);
      await store.jobs.startEntry(ref, "one", T0 + 30);
      await store.outputs.appendLog(ref, "two", 0, Buffer.from("early"), T0 + 31);
      assert.deepEqual(await states(), [
        ["prepare", "prepare", 0, "completed"],
        ["one", "step", 1, "running"],
        ["two", "step", 2, "pending"],
        ["three", "step", 3, "pending"],
      ]);
      const two = (await store.jobs.getJob(job.id))?.entries.find((entry) => entry.key === "two");
      assert.deepEqual([two?.size, two?.startedAt], [5, null], "an append before the step started is kept, the step still pending");
      const skippedEarly = await store.jobs.finishEntry(ref, "three", { state: "skipped", exitCode: null, durationMs: 0 }, T0 + 35);
      assert.deepEqual([skippedEarly.state, skippedEarly.kind, skippedEarly.index, skippedEarly.startedAt], ["skipped", "step", 3, T0 + 35], "a step may end without having started");
      await assert.rejects(store.jobs.startEntry(ref, "three", T0 + 36), ConflictError);
      await assert.rejects(store.jobs.startEntry(ref, "nope", T0 + 36), NotFoundError);
      await assert.rejects(store.jobs.finishEntry(ref, "nope", { state: "completed", exitCode: 0, durationMs: 1 }, T0 + 36), NotFoundError);
      await store.jobs.startEntry(ref, "finalize", T0 + 40);
      await store.jobs.finishAttempt(ref, "failed", "step one failed", T0 + 50);
      assert.deepEqual(await states(), [
        ["prepare", "prepare", 0, "completed"],
        ["one", "step", 1, "running"],
        ["two", "step", 2, "skipped"],
        ["three", "step", 3, "skipped"],
        ["finalize", "finalize", 4, "running"],
      ]);
    });

    it("extends leases on heartbeat and reports known and canceled jobs", async () => {
      const a = await enqueue();
      const b = await enqueue();
      const first = await claim("exec-a", T0 + 10);
      const second = await claim("exec-b", T0 + 10);
      assert.ok(first && second);
      await store.jobs.requestCancel(b.id, T0 + 20);
      const replyA = await store.jobs.heartbeat(executor("exec-a"), [a.id, b.id, 9999], LEASE, T0 + 15_000);
      assert.deepEqual(replyA, { knownIds: [a.id], cancelIds: [] }, "another executor's job is not known to this one");
      const replyB = await store.jobs.heartbeat(executor("exec-b"), [b.id], LEASE, T0 + 15_000);
      assert.deepEqual(replyB, { knownIds: [b.id], cancelIds: [b.id] });
      assert.deepEqual(await store.jobs.reapExpiredLeases(T0 + 30_000), [], "heartbeats moved both leases past now");
      const executors = await store.jobs.listExecutors();
      const recordA = executors.find((record) => record.executorName === "exec-a");
      assert.equal(recordA?.lastHeartbeatAt, T0 + 15_000);
      assert.deepEqual(recordA?.runningJobIds, [a.id]);
    });

    it("keeps the warm pool of an executor's latest heartbeat; a claim leaves it, a heartbeat without one clears it", async () => {
      const pool = { size: 2, idle: 1, booting: 1, idleRssBytes: 160 * 1024 * 1024, refill: "restore" as const };
      const recordOf = async (name: string) => (await store.jobs.listExecutors()).find((record) => record.executorName === name);
      await store.jobs.heartbeat(executor("exec-pool"), [], LEASE, T0 + 1000, pool);
      assert.deepEqual((await recordOf("exec-pool"))?.warmPool, pool, "a new executor's row holds it");
      const fuller = { ...pool, idle: 2, booting: 0, idleRssBytes: 320 * 1024 * 1024 };
      await store.jobs.heartbeat(executor("exec-pool"), [], LEASE, T0 + 2000, fuller);
      assert.deepEqual((await recordOf("exec-pool"))?.warmPool, fuller, "the next heartbeat replaces it");
      await store.jobs.heartbeat(executor("exec-pool"), [], LEASE, T0 + 1500, pool);
      assert.deepEqual((await recordOf("exec-pool"))?.warmPool, fuller, "an older, late heartbeat does not");
      await enqueue({}, T0 + 2100);
      await claim("exec-pool", T0 + 2200);
      assert.deepEqual((await recordOf("exec-pool"))?.warmPool, fuller, "a claim carries no pool and leaves it");
      await store.jobs.heartbeat(executor("exec-pool"), [], LEASE, T0 + 3000);
      assert.equal((await recordOf("exec-pool"))?.warmPool, null, "a heartbeat without a pool clears it");
    });

    it("answers heartbeats sent at once by many executors, each about its own jobs", async () => {
      const jobs: JobRecord[] = [];
      for (let index = 0; index < 12; index += 1) jobs.push(await enqueue({}, T0 + index));
      const claims: ({ ref: AttemptRef; token: string } | undefined)[] = [];
      for (let index = 0; index < 12; index += 1) claims.push(await claim(`exec-${index % 6}`, T0 + 20));
      await store.jobs.requestCancel(jobs[1]!.id, T0 + 30);
      await store.jobs.requestCancel(jobs[8]!.id, T0 + 30);
      const held = (name: string) => claims.filter((claimed) => claimed?.ref.executorName === name).map((claimed) => claimed!.ref.jobId);
      const names = Array.from({ length: 6 }, (_, index) => `exec-${index}`);
      const replies = await Promise.all([
        ...names.map((name) => store.jobs.heartbeat(executor(name), [...held(name), jobs[0]!.id === held(name)[0] ? 9999 : jobs[0]!.id], LEASE, T0 + 15_000)),
        // The same executor twice at once (a retried heartbeat), and one not seen before with no jobs.
        store.jobs.heartbeat(executor("exec-0"), held("exec-0"), LEASE, T0 + 15_001),
        store.jobs.heartbeat(executor("exec-new", { hostname: "elsewhere" }), [], LEASE, T0 + 15_000),
      ]);
      names.forEach((name, index) => {
        const mine = held(name).sort((a, b) => a - b);
        assert.deepEqual(replies[index], { knownIds: mine, cancelIds: mine.filter((id) => id === jobs[1]!.id || id === jobs[8]!.id) }, name);
      });
      assert.deepEqual(replies[6]?.knownIds, held("exec-0").sort((a, b) => a - b));
      assert.deepEqual(replies[7], { knownIds: [], cancelIds: [] });
      const executors = await store.jobs.listExecutors();
      assert.equal(executors.find((record) => record.executorName === "exec-new")?.hostname, "elsewhere");
      assert.equal(executors.find((record) => record.executorName === "exec-0")?.lastHeartbeatAt, T0 + 15_001);
      assert.deepEqual(await store.jobs.reapExpiredLeases(T0 + LEASE + 100), [], "every lease was extended");
    });

    it("records the version and executor protocol each executor reports, by heartbeat and by claim", async () => {
      await store.jobs.heartbeat(executor("exec-old", { version: "0.1.0", protocolVersion: 1 }), [], LEASE, T0 + 1);
      await store.jobs.heartbeat(executor("exec-new", { version: "0.2.0+abc", protocolVersion: 2 }), [], LEASE, T0 + 2);
      const seen = async (name: string) => (await store.jobs.listExecutors()).find((record) => record.executorName === name);
      assert.deepEqual([(await seen("exec-old"))?.version, (await seen("exec-old"))?.protocolVersion], ["0.1.0", 1]);
      assert.deepEqual([(await seen("exec-new"))?.version, (await seen("exec-new"))?.protocolVersion], ["0.2.0+abc", 2]);
      // An executor restarted under the same name on a newer build: its record follows.
      await store.jobs.heartbeat(executor("exec-old", { version: "0.3.0", protocolVersion: 3 }), [], LEASE, T0 + 3);
      assert.deepEqual([(await seen("exec-old"))?.version, (await seen("exec-old"))?.protocolVersion], ["0.3.0", 3]);
      await enqueue({}, T0 + 4);
      assert.ok(await claim("exec-claimer", T0 + 5_000, { version: "0.4.0", protocolVersion: 4 }));
      assert.deepEqual([(await seen("exec-claimer"))?.version, (await seen("exec-claimer"))?.protocolVersion], ["0.4.0", 4], "a claim records the executor too");
    });

    it("appends logs by offset, idempotently, and reads ranges", async () => {
      await enqueue();
      const claimed = await claim();
      assert.ok(claimed);
      const { ref } = claimed;
      assert.equal((await store.outputs.appendLog(ref, "one", 0, Buffer.from("hello "), T0)).size, 6);
      assert.equal((await store.outputs.appendLog(ref, "one", 0, Buffer.from("hello "), T0)).size, 6, "a retried append stores nothing twice");
      assert.equal((await store.outputs.appendLog(ref, "one", 3, Buffer.from("lo world"), T0)).size, 11, "an overlapping append keeps only the new bytes");
      await assert.rejects(store.outputs.appendLog(ref, "one", 20, Buffer.from("gap"), T0), ConflictError);
      await assert.rejects(store.outputs.appendLog(ref, "nope", 0, Buffer.from("x"), T0), NotFoundError);
      assert.equal(Buffer.from(await store.outputs.readLog(ref.jobId, 1, "one", 0, 100)).toString(), "hello world");
      assert.equal(Buffer.from(await store.outputs.readLog(ref.jobId, 1, "one", 4, 3)).toString(), "o w");
      assert.equal((await store.outputs.readLog(ref.jobId, 1, "one", 11, 10)).byteLength, 0);
      const detail = await store.jobs.getJob(ref.jobId);
      assert.equal(detail?.entries.find((entry) => entry.key === "one")?.size, 11);
    });

    it("reports a requested cancel in the append reply", async () => {
      const job = await enqueue();
      const claimed = await claim();
      assert.ok(claimed);
      assert.equal((await store.outputs.appendLog(claimed.ref, "one", 0, Buffer.from("a"), T0)).cancel, false);
      await store.jobs.requestCancel(job.id, T0);
      assert.equal((await store.outputs.appendLog(claimed.ref, "one", 1, Buffer.from("b"), T0)).cancel, true);
      const ended = await store.jobs.finishAttempt(claimed.ref, "failed", "killed", T0 + 1);
      assert.equal(ended.state, "canceled", "a requested cancel wins over the reported outcome");
    });

    it("records entry starts and ends, and fences every write of an ended attempt", async () => {
      await enqueue();
      const claimed = await claim();
      assert.ok(claimed);
      const { ref } = claimed;
      const started = await store.jobs.startEntry(ref, "one", T0 + 50);
      assert.equal(started.entry.state, "running");
      assert.equal(started.queuedAt, T0);
      const finished = await store.jobs.finishEntry(ref, "one", { state: "completed", exitCode: 0, durationMs: 12 }, T0 + 62);
      assert.deepEqual([finished.state, finished.exitCode, finished.durationMs], ["completed", 0, 12]);
      await assert.rejects(store.jobs.finishEntry(ref, "one", { state: "failed", exitCode: 1, durationMs: 1 }, T0 + 63), ConflictError);
      const retried = await store.jobs.finishEntry(ref, "one", { state: "completed", exitCode: 0, durationMs: 12 }, T0 + 64);
      assert.deepEqual([retried.state, retried.finishedAt], ["completed", T0 + 62], "a retried finish with the same result is answered, not refused");
      await store.jobs.startEntry(ref, "finalize", T0 + 70);
      assert.ok((await store.jobs.getJob(ref.jobId))?.entries.some((entry) => entry.key === "finalize" && entry.kind === "finalize"));
      const done = await store.jobs.finishAttempt(ref, "completed", null, T0 + 100);
      assert.equal(done.state, "completed");
      assert.equal(done.finishedAt, T0 + 100);
      assert.equal((await store.jobs.getJob(ref.jobId))?.entries.find((entry) => entry.key === "two")?.state, "skipped");
      await assert.rejects(store.outputs.appendLog(ref, "two", 0, Buffer.from("late"), T0 + 101), LeaseLostError);
      await assert.rejects(store.jobs.startEntry(ref, "two", T0 + 101), LeaseLostError);
      await assert.rejects(store.jobs.finishAttempt(ref, "completed", null, T0 + 101), LeaseLostError);
      await assert.rejects(store.outputs.putArtifact(ref, "diff", bytes(Buffer.from("x")), T0 + 101), LeaseLostError);
    });

    it("ends many attempts at once, each on its own terms", async () => {
      const jobs: JobRecord[] = [];
      for (let index = 0; index < 8; index += 1) jobs.push(await enqueue({ maxAttempts: index === 2 ? 2 : 1 }, T0 + index));
      const claims: { ref: AttemptRef; token: string }[] = [];
      for (let index = 0; index < 8; index += 1) claims.push((await claim(`exec-${index}`, T0 + 20)) as { ref: AttemptRef; token: string });
      await store.jobs.requestCancel(jobs[4]!.id, T0 + 30);
      await store.jobs.finishAttempt(claims[5]!.ref, "completed", null, T0 + 35);
      const ref = (index: number) => claims[index]!.ref;
      const results = await Promise.allSettled([
        store.jobs.finishAttempt(ref(0), "completed", null, T0 + 40),
        store.jobs.finishAttempt(ref(1), "failed", "exit 1", T0 + 40),
        store.jobs.finishAttempt(ref(2), "errored", "sandbox broke", T0 + 40),
        store.jobs.finishAttempt(ref(3), "errored", "sandbox broke", T0 + 40),
        store.jobs.finishAttempt(ref(4), "failed", "killed", T0 + 40),
        store.jobs.finishAttempt(ref(5), "completed", null, T0 + 40),
        store.jobs.finishAttempt(ref(6), "completed", null, T0 + 40),
        store.jobs.finishAttempt(ref(6), "completed", null, T0 + 41),
        store.jobs.finishAttempt({ ...ref(7), attempt: 2 }, "completed", null, T0 + 40),
      ]);
      const seen = results.map((result) => (result.status === "fulfilled" ? [result.value.id, result.value.state, result.value.failureMessage] : result.reason instanceof LeaseLostError ? "lease lost" : String(result.reason)));
      assert.deepEqual(seen.slice(0, 5), [
        [jobs[0]!.id, "completed", null],
        [jobs[1]!.id, "failed", "exit 1"],
        [jobs[2]!.id, "queued", "sandbox broke"],
        [jobs[3]!.id, "errored", "sandbox broke"],
        [jobs[4]!.id, "canceled", "killed"],
      ]);
      assert.equal(seen[5], "lease lost", "an attempt that already ended stays ended");
      assert.deepEqual(
        [seen[6], seen[7]].filter((entry) => entry !== "lease lost"),
        [[jobs[6]!.id, "completed", null]],
        "the same end twice at once ends the attempt once",
      );
      assert.equal(seen[8], "lease lost", "an attempt the job never had cannot end");
      assert.equal((await store.jobs.getJob(jobs[7]!.id))?.job.state, "processing");
      assert.equal((await store.jobs.getJob(jobs[2]!.id))?.job.executorName, null, "a requeued job has no executor");
      for (const index of [0, 1, 2, 3, 4, 6]) assert.deepEqual(await store.jobs.findAttempt(claims[index]!.token), { ...ref(index), live: false });
      assert.equal((await claim("exec-retry", T0 + 50))?.ref.jobId, jobs[2]!.id, "the requeued job is claimable");
    });

    it("requeues errored attempts while attempts remain, then errors", async () => {
      const job = await enqueue({ maxAttempts: 2 });
      const first = await claim("exec-a", T0 + 10);
      assert.ok(first);
      const requeued = await store.jobs.finishAttempt(first.ref, "errored", "sandbox broke", T0 + 20);
      assert.equal(requeued.state, "queued");
      assert.equal(requeued.queuedAt, T0 + 20);
      const second = await claim("exec-b", T0 + 30);
      assert.equal(second?.ref.attempt, 2);
      assert.ok(second);
      const final = await store.jobs.finishAttempt(second.ref, "errored", "sandbox broke again", T0 + 40);
      assert.equal(final.state, "errored");
      assert.equal(final.failureMessage, "sandbox broke again");
      assert.equal((await store.jobs.getJob(job.id))?.job.attempt, 2);
    });

    it("reaps lapsed leases into new attempts, fences the stale one, errors when out of attempts", async () => {
      const job = await enqueue({ maxAttempts: 2 });
      const first = await claim("exec-a", T0);
      assert.ok(first);
      assert.deepEqual(await store.jobs.reapExpiredLeases(T0 + LEASE - 1), []);
      const reaped = await store.jobs.reapExpiredLeases(T0 + LEASE + 1);
      assert.deepEqual(reaped.map((record) => [record.id, record.state]), [[job.id, "queued"]]);
      await assert.rejects(store.outputs.appendLog(first.ref, "one", 0, Buffer.from("stale"), T0 + LEASE + 2), LeaseLostError);
      assert.deepEqual((await store.jobs.heartbeat(executor("exec-a"), [job.id], LEASE, T0 + LEASE + 2)).knownIds, []);
      const second = await claim("exec-b", T0 + LEASE + 3);
      assert.equal(second?.ref.attempt, 2);
      const last = await store.jobs.reapExpiredLeases(T0 + 3 * LEASE);
      assert.equal(last[0]?.state, "errored");
      assert.match(last[0]?.failureMessage ?? "", /lease expired/);
    });

    it("cancels queued jobs at once and refuses to cancel ended ones", async () => {
      const job = await enqueue();
      const canceled = await store.jobs.requestCancel(job.id, T0 + 5);
      assert.equal(canceled.state, "canceled");
      assert.equal(await claim(), undefined);
      await assert.rejects(store.jobs.requestCancel(job.id, T0 + 6), ConflictError);
      await assert.rejects(store.jobs.requestCancel(424242, T0 + 6), NotFoundError);
    });

    it("stores artifacts in chunks, replaces them by name, and shows only the current attempt's", async () => {
      const job = await enqueue({ maxAttempts: 2 });
      const claimed = await claim();
      assert.ok(claimed);
      const big = Buffer.alloc(2.5 * 1024 * 1024, 7);
      big.write("start", 0);
      const record = await store.outputs.putArtifact(claimed.ref, "diff", bytes(big.subarray(0, 1000), big.subarray(1000)), T0);
      assert.equal(record.size, big.length);
      const read = await store.outputs.readArtifact(job.id, "diff");
      assert.ok(read);
      assert.ok((await collect(read.chunks)).equals(big));
      await store.outputs.putArtifact(claimed.ref, "diff", bytes(Buffer.from("small")), T0);
      const again = await store.outputs.readArtifact(job.id, "diff");
      assert.equal((await collect(again!.chunks)).toString(), "small");
      assert.deepEqual((await store.jobs.getJob(job.id))?.artifacts.map((artifact) => [artifact.name, artifact.size]), [["diff", 5]]);
      await store.jobs.finishAttempt(claimed.ref, "errored", "retry", T0 + 1);
      await claim("exec-b", T0 + 2);
      assert.equal(await store.outputs.readArtifact(job.id, "diff"), undefined, "a new attempt starts without artifacts");
    });

    it("lists jobs with filters and paging, and queue statistics", async () => {
      const jobs = [];
      for (let index = 0; index < 5; index += 1) jobs.push(await enqueue({ queue: index % 2 ? "odd" : "even" }, T0 + index));
      assert.deepEqual((await store.jobs.listJobs({ limit: 10 })).map((job) => job.id), jobs.map((job) => job.id).reverse());
      assert.equal((await store.jobs.listJobs({ queue: "odd", limit: 10 })).length, 2);
      assert.deepEqual((await store.jobs.listJobs({ limit: 2, before: jobs[3]!.id })).map((job) => job.id), [jobs[2]!.id, jobs[1]!.id]);
      await claim("exec-a", T0 + 10, { queues: ["even"] });
      assert.equal((await store.jobs.listJobs({ state: "processing", limit: 10 })).length, 1);
      const stats = await store.jobs.queueStats();
      assert.deepEqual(
        stats.map((queue) => [queue.name, queue.queued, queue.processing, queue.oldestQueuedAt]),
        [
          ["even", 2, 1, T0 + 2],
          ["odd", 2, 0, T0 + 1],
        ],
      );
    });

    it("keeps repositories", async () => {
      await store.repositories.put("acme/web", "/src/web", T0);
      await store.repositories.put("acme/api", "/src/api", T0 + 1);
      await store.repositories.put("acme/web", "/moved/web", T0 + 2);
      assert.deepEqual((await store.repositories.list()).map((repo) => [repo.name, repo.source]), [
        ["acme/api", "/src/api"],
        ["acme/web", "/moved/web"],
      ]);
      assert.equal((await store.repositories.get("acme/web"))?.createdAt, T0);
      assert.equal(await store.repositories.get("nope"), undefined);
    });
  });
}
