/**
 * Queue history (src/coordinator/services/queue-history.ts) over a real SQLite store, with time
 * passed in: depth, oldest wait, pickup latency and throughput land in the right buckets.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { FakeClock } from "../../src/common/clock.ts";
import { QueueHistoryService, windowFor } from "../../src/coordinator/services/queue-history.ts";
import { JobSpecInput, QueueHistoryQuery, type ExecutorIdentity } from "../../src/protocol/index.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { Store } from "../../src/store/index.ts";

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const executor: ExecutorIdentity = { executorName: "e1", hostname: "h", version: "t", protocolVersion: 1, runtime: "shell", isolation: ["none"], network: "internet", queues: ["a", "b"] };

describe("queue history", () => {
  let dir: string;
  let store: Store;
  let clock: FakeClock;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "airlock-history-"));
    store = createSqliteStore(join(dir, "airlock.db"));
    await store.migrate();
    clock = new FakeClock(T0);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const enqueue = (queue: string, at: number) => store.jobs.enqueue({ spec: JobSpecInput.parse({ queue, isolation: "none", steps: [{ commands: ["true"] }] }), ref: null, commit: null }, at);
  const claim = async (at: number) => {
    const job = await store.jobs.claim({ executor, tokenHash: `t${at}`, leaseMs: 10 * MINUTE }, at);
    assert.ok(job, `a job to claim at ${at}`);
    return { jobId: job.id, attempt: job.attempt, repository: null, executorName: "e1" };
  };

  it("aligns buckets to their width, the last holding now", () => {
    const window = windowFor(QueueHistoryQuery.parse({ window: "10m", bucket: "1m" }), T0 + 30_500);
    assert.equal(window.count, 10);
    assert.equal(window.first, T0 - 9 * MINUTE);
    assert.equal(window.first + window.count * MINUTE, T0 + MINUTE);
  });

  it("puts waits, pickups and endings in their buckets", async () => {
    // Queue a: one job waits 2.5 minutes then runs 1 minute and completes; another fails fast.
    await enqueue("a", T0 - 8 * MINUTE);
    const first = await claim(T0 - 8 * MINUTE + 150_000);
    await store.jobs.finishAttempt(first, "completed", null, T0 - 5 * MINUTE + 150_000);
    await enqueue("a", T0 - 3 * MINUTE + 1000);
    const second = await claim(T0 - 3 * MINUTE + 1500);
    await store.jobs.finishAttempt(second, "failed", "exit 1", T0 - 3 * MINUTE + 2000);
    // Queue b: one job canceled while it waited, one still waiting.
    const canceled = await enqueue("b", T0 - 6 * MINUTE);
    await store.jobs.requestCancel(canceled.id, T0 - 4 * MINUTE);
    await enqueue("b", T0 - 2 * MINUTE);
    clock.advance(30_000);

    const history = await new QueueHistoryService(store.jobs, clock).history(QueueHistoryQuery.parse({ window: "10m" }));
    assert.equal(history.complete, true);
    assert.deepEqual(history.queues.map((queue) => queue.name), ["a", "b"]);
    const [a, b] = history.queues;
    const minute = (offset: number) => 9 + offset; // bucket index of T0 + offset minutes
    assert.ok(a && b);
    assert.deepEqual(a.buckets.map((bucket) => bucket.depth), [0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(a.buckets[minute(-7)]?.oldestWaitMs, 2 * MINUTE - 1);
    assert.equal(a.buckets[minute(-6)]?.claimed, 1);
    assert.equal(a.buckets[minute(-6)]?.pickupP50Ms, 150_000);
    assert.equal(a.buckets[minute(-3)]?.pickupMaxMs, 500);
    assert.equal(a.buckets[minute(-3)]?.failed, 1);
    assert.equal(a.buckets[minute(-3)]?.completed, 1);
    assert.deepEqual(b.buckets.map((bucket) => bucket.depth), [0, 0, 0, 1, 1, 0, 0, 1, 1, 1]);
    assert.equal(b.buckets[minute(-4)]?.canceled, 1);
    assert.equal(b.buckets[minute(0)]?.oldestWaitMs, 2 * MINUTE + 30_000, "the current bucket samples now");
    assert.equal(b.buckets.reduce((sum, bucket) => sum + bucket.claimed, 0), 0);
  });

  it("sees jobs queued long before the window that still wait, and caches for a moment", async () => {
    await enqueue("a", T0 - 5 * 60 * MINUTE);
    const service = new QueueHistoryService(store.jobs, clock);
    const query = QueueHistoryQuery.parse({ window: "1h" });
    const history = await service.history(query);
    assert.ok(history.queues[0]?.buckets.every((bucket) => bucket.depth === 1));
    assert.equal(history.queues[0]?.buckets.at(-1)?.oldestWaitMs, 5 * 60 * MINUTE);
    await enqueue("b", T0);
    assert.equal((await service.history(query)).queues.length, 1, "cached");
    clock.advance(5000);
    assert.equal((await service.history(query)).queues.length, 2, "recomputed after the cache expires");
  });

  it("rejects windows it will not compute", () => {
    assert.equal(QueueHistoryQuery.safeParse({ window: "25h" }).success, false);
    assert.equal(QueueHistoryQuery.safeParse({ window: "1h", bucket: "1s" }).success, false);
    assert.equal(QueueHistoryQuery.safeParse({ window: "soon" }).success, false);
    assert.deepEqual(QueueHistoryQuery.parse({}), { window: 60 * MINUTE, bucket: MINUTE });
  });
});
