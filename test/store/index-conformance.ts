/** IndexStore cases of the store conformance suite (run by storeConformance for every backend). */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { ConflictError, NotFoundError } from "../../src/protocol/index.ts";
import type { NewIndex, Store } from "../../src/store/index.ts";
import type { StoreFactory } from "./conformance.ts";

const T0 = Date.UTC(2026, 0, 1);
const SHA = "b".repeat(40);

function index(overrides: Partial<NewIndex> = {}): NewIndex {
  return { repository: "acme/web", commit: SHA, root: ".", indexer: "scip-typescript", indexerVersion: "0.4.0", jobId: 7, artifact: "index.scip", ...overrides };
}

export function indexStoreConformance(backend: string, factory: StoreFactory): void {
  describe(`IndexStore conformance: ${backend}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await factory.create();
    });
    afterEach(async () => {
      await factory.destroy(store);
    });

    it("creates a pending index and completes it once, with its counts", async () => {
      const created = await store.indexes.create(index(), T0);
      assert.equal(created.state, "pending");
      assert.equal(created.counts, null);
      assert.deepEqual({ ...created, id: 0 }, { id: 0, repository: "acme/web", commit: SHA, root: ".", indexer: "scip-typescript", indexerVersion: "0.4.0", jobId: 7, artifact: "index.scip", state: "pending", counts: null, failureMessage: null, createdAt: T0, updatedAt: T0 });
      const done = await store.indexes.complete(created.id, { documents: 3, symbols: 40, occurrences: 120, size: 5000 }, T0 + 5);
      assert.equal(done.state, "completed");
      assert.deepEqual(done.counts, { documents: 3, symbols: 40, occurrences: 120, size: 5000 });
      assert.equal(done.updatedAt, T0 + 5);
      assert.deepEqual(await store.indexes.get(created.id), done);
      await assert.rejects(store.indexes.complete(created.id, { documents: 1, symbols: 1, occurrences: 1, size: 1 }, T0 + 6), ConflictError);
      await assert.rejects(store.indexes.fail(created.id, "late", T0 + 6), ConflictError);
      await assert.rejects(store.indexes.complete(created.id + 100, { documents: 1, symbols: 1, occurrences: 1, size: 1 }, T0), NotFoundError);
      assert.equal(await store.indexes.get(created.id + 100), undefined);
    });

    it("fails an index with its message; a failed index is not live, a pending or completed one is", async () => {
      const first = await store.indexes.create(index(), T0);
      assert.equal((await store.indexes.findLive(index()))?.id, first.id);
      const failed = await store.indexes.fail(first.id, "scip-typescript exited with 1", T0 + 1);
      assert.equal(failed.state, "failed");
      assert.equal(failed.failureMessage, "scip-typescript exited with 1");
      assert.equal(await store.indexes.findLive(index()), undefined);
      const second = await store.indexes.create(index({ jobId: 8 }), T0 + 2);
      await store.indexes.complete(second.id, { documents: 1, symbols: 2, occurrences: 3, size: 4 }, T0 + 3);
      assert.equal((await store.indexes.findLive(index()))?.id, second.id);
      // Another root, indexer version or commit is another key.
      assert.equal(await store.indexes.findLive(index({ root: "packages/a" })), undefined);
      assert.equal(await store.indexes.findLive(index({ indexerVersion: "0.5.0" })), undefined);
      assert.equal(await store.indexes.findLive(index({ commit: "c".repeat(40) })), undefined);
    });

    it("lists newest first, by repository and commit, up to the limit", async () => {
      const a = await store.indexes.create(index(), T0);
      const b = await store.indexes.create(index({ repository: "acme/api" }), T0 + 1);
      const c = await store.indexes.create(index({ commit: "c".repeat(40), root: "packages/x" }), T0 + 2);
      assert.deepEqual((await store.indexes.list({ limit: 10 })).map((record) => record.id), [c.id, b.id, a.id]);
      assert.deepEqual((await store.indexes.list({ repository: "acme/web", limit: 10 })).map((record) => record.id), [c.id, a.id]);
      assert.deepEqual((await store.indexes.list({ repository: "acme/web", commit: SHA, limit: 10 })).map((record) => record.id), [a.id]);
      assert.deepEqual((await store.indexes.list({ limit: 1 })).map((record) => record.id), [c.id]);
      assert.deepEqual(await store.indexes.list({ repository: "nobody", limit: 10 }), []);
    });

    it("keeps an indexing policy per repository: auto-index, config, the HEAD last acted on (once per new HEAD)", async () => {
      assert.equal(await store.indexes.getPolicy("acme/web"), undefined);
      const on = await store.indexes.putPolicy("acme/web", { autoIndex: true }, T0);
      assert.deepEqual(on, { repository: "acme/web", autoIndex: true, config: null, seenHead: null, updatedAt: T0 });
      const configured = await store.indexes.putPolicy("acme/web", { config: "roots: [{ path: a }]\n" }, T0 + 1);
      assert.deepEqual([configured.autoIndex, configured.config], [true, "roots: [{ path: a }]\n"], "a field not given keeps its value");
      assert.equal(await store.indexes.markHeadSeen("acme/web", SHA, T0 + 2), true);
      assert.equal(await store.indexes.markHeadSeen("acme/web", SHA, T0 + 3), false, "the same HEAD again is not new");
      assert.equal(await store.indexes.markHeadSeen("acme/web", "c".repeat(40), T0 + 4), true);
      const off = await store.indexes.putPolicy("acme/web", { autoIndex: false, config: null }, T0 + 5);
      assert.deepEqual(off, { repository: "acme/web", autoIndex: false, config: null, seenHead: "c".repeat(40), updatedAt: T0 + 5 });
      assert.equal(await store.indexes.markHeadSeen("acme/api", SHA, T0 + 6), true, "a repository without a policy gets one, off");
      assert.deepEqual((await store.indexes.listPolicies()).map((policy) => [policy.repository, policy.autoIndex, policy.seenHead]), [
        ["acme/api", false, SHA],
        ["acme/web", false, "c".repeat(40)],
      ]);
    });
  });
}
