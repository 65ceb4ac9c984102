/**
 * The dispatcher against a real (SQLite) store: weighted fairness between queues, and one wake per
 * queued job reaching a waiter that can take it.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/common/clock.ts";
import { createLogger } from "../../src/common/logger.ts";
import { Dispatcher, weightedOrder } from "../../src/coordinator/services/dispatcher.ts";
import { parseQueueWeights } from "../../src/coordinator/config.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { Store } from "../../src/store/index.ts";
import { executor, spec } from "../store/conformance.ts";

/** A seeded PRNG (mulberry32), so the fairness figures are the same on every run. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("dispatcher", () => {
  let dir: string;
  let store: Store;
  let dispatcher: Dispatcher;
  const logger = createLogger({ level: "silent", format: "json" });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "airlock-dispatch-"));
    store = createSqliteStore(join(dir, "airlock.db"));
    await store.migrate();
    dispatcher = new Dispatcher({ store, clock: systemClock, leaseMs: 20_000, logger, queueWeights: { batch: 4 } });
  });
  after(async () => {
    dispatcher.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const request = (name: string, queues: string[], isolation: ("none" | "vm")[] = ["none"]) => ({
    ...executor(name, { queues, isolation }),
    waitMs: 10_000,
  });

  it("orders queues by weight: the first of any subset is picked in proportion to its weight", () => {
    const random = seeded(42);
    const first = { batch: 0, default: 0 };
    for (let draw = 0; draw < 10_000; draw += 1) first[weightedOrder(["default", "batch", "other"], { batch: 4 }, random)[0] === "batch" ? "batch" : "default"] += 1;
    // batch: 4 / (4 + 1 + 1) of the draws.
    assert.ok(Math.abs(first.batch / 10_000 - 4 / 6) < 0.02, `batch came first in ${first.batch} of 10000 draws`);
  });

  it("parses queue weights and names what is wrong", () => {
    assert.deepEqual(parseQueueWeights({ value: "batch=4, default=1.5", from: "--queue-weights" }), { batch: 4, default: 1.5 });
    assert.throws(() => parseQueueWeights({ value: "batch=0", from: "--queue-weights" }), /--queue-weights: "batch=0"/);
    assert.throws(() => parseQueueWeights({ value: "batch", from: "AIRLOCK_QUEUE_WEIGHTS" }), /AIRLOCK_QUEUE_WEIGHTS: "batch" is not queue=weight/);
  });

  it("serves a quiet queue beside a busy one instead of draining the busy backlog first", async () => {
    for (let index = 0; index < 40; index += 1) await store.jobs.enqueue({ spec: spec({ queue: "busy" }), ref: null, commit: null }, 1000 + index);
    const quiet = await store.jobs.enqueue({ spec: spec({ queue: "quiet" }), ref: null, commit: null }, 5000);
    const taken: number[] = [];
    for (let index = 0; index < 20 && !taken.includes(quiet.id); index += 1) {
      const claimed = await dispatcher.dequeue(request(`fair-${index}`, ["busy", "quiet"]), 0, new AbortController().signal);
      if (claimed) taken.push(claimed.job.id);
    }
    // Oldest-first would take all 40 busy jobs first; equal weights give the quiet queue half the picks.
    assert.ok(taken.includes(quiet.id), `the quiet queue's job was not picked in ${taken.length} dequeues`);
  });

  it("answers every held dequeue when as many jobs are queued, one at a time", async () => {
    const waits = [1, 2, 3].map((index) => dispatcher.dequeue(request(`held-${index}`, ["held"]), 10_000, new AbortController().signal));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const queued = [];
    for (let index = 0; index < 3; index += 1) queued.push((await store.jobs.enqueue({ spec: spec({ queue: "held" }), ref: null, commit: null }, Date.now())).id);
    const got = await Promise.all(waits);
    assert.deepEqual(got.map((claimed) => claimed?.job.id).sort(), queued.sort());
  });

  it("wakes a waiter that can isolate the job, not an earlier one that cannot", async () => {
    const weak = dispatcher.dequeue(request("weak", ["iso"], ["none"]), 3_000, new AbortController().signal);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const strong = dispatcher.dequeue(request("strong", ["iso"], ["none", "vm"]), 10_000, new AbortController().signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const job = await store.jobs.enqueue({ spec: spec({ queue: "iso", isolation: "vm" }), ref: null, commit: null }, Date.now());
    assert.equal((await strong)?.job.id, job.id);
    assert.equal(await weak, undefined);
  });

  it("passes a wake on when the woken waiter leaves without claiming", async () => {
    const controller = new AbortController();
    const first = dispatcher.dequeue(request("leaver", ["pass"]), 10_000, controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = dispatcher.dequeue(request("stayer", ["pass"]), 10_000, new AbortController().signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The abort lands while the first waiter holds the wake, before it can claim.
    const enqueued = store.jobs.enqueue({ spec: spec({ queue: "pass" }), ref: null, commit: null }, Date.now());
    controller.abort();
    const job = await enqueued;
    const [a, b] = await Promise.all([first, second]);
    assert.equal([a, b].filter((claimed) => claimed?.job.id === job.id).length, 1, "exactly one of them got the job");
  });
});
