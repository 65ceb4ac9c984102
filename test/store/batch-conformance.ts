/** BatchStore cases of the store conformance suite (run by storeConformance for every backend). */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { NotFoundError } from "../../src/protocol/index.ts";
import type { NewBatchEntry, NewBatchVersion, Store } from "../../src/store/index.ts";
import type { StoreFactory } from "./conformance.ts";

const T0 = Date.UTC(2026, 0, 1);

function entry(repository: string, overrides: Partial<NewBatchEntry> = {}): NewBatchEntry {
  return {
    repository,
    workspace: ".",
    branch: "main",
    commit: "a".repeat(40),
    jobId: null,
    cachedFromEntryId: null,
    state: "queued",
    diffStat: null,
    cacheKey: `key-${repository}`,
    failureMessage: null,
    ...overrides,
  };
}

function version(name: string, entries: NewBatchEntry[], overrides: Partial<NewBatchVersion> = {}): NewBatchVersion {
  return { name, description: "a batch", spec: { name, steps: [{ key: "one" }] }, specText: `name: ${name}\n`, source: "server", entries, ...overrides };
}

export function batchStoreConformance(backend: string, factory: StoreFactory): void {
  describe(`BatchStore conformance: ${backend}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await factory.create();
    });
    afterEach(async () => {
      await factory.destroy(store);
    });

    it("numbers the versions of a name 1, 2, ... and keeps each version's spec and entries", async () => {
      const first = await store.batches.createVersion(version("rename", [entry("acme/web", { jobId: 7 }), entry("acme/api", { workspace: "pkg/a" }), entry("acme/api")]), T0);
      assert.equal(first.batch.name, "rename");
      assert.equal(first.batch.latestVersion, 1);
      assert.equal(first.version.version, 1);
      assert.deepEqual(first.version.spec, { name: "rename", steps: [{ key: "one" }] });
      assert.equal(first.version.specText, "name: rename\n");
      assert.equal(first.version.source, "server");
      assert.deepEqual(first.entries.map((e) => [e.repository, e.workspace, e.jobId, e.state, e.version]), [
        ["acme/api", ".", null, "queued", 1],
        ["acme/api", "pkg/a", null, "queued", 1],
        ["acme/web", ".", 7, "queued", 1],
      ]);
      const second = await store.batches.createVersion(version("rename", [entry("acme/web")], { description: "edited", source: "local" }), T0 + 5);
      assert.equal(second.batch.id, first.batch.id);
      assert.equal(second.version.version, 2);
      assert.equal(second.batch.description, "edited");
      assert.equal(second.batch.createdAt, T0);
      assert.equal(second.batch.updatedAt, T0 + 5);
      assert.deepEqual(await store.batches.listVersions(first.batch.id), [1, 2]);
      assert.equal((await store.batches.listEntries(first.batch.id, 1)).length, 3);
      assert.equal((await store.batches.listEntries(first.batch.id, 2)).length, 1);
      assert.equal((await store.batches.getVersion(first.batch.id, 2))?.source, "local");
      assert.equal(await store.batches.getVersion(first.batch.id, 3), undefined);
      assert.deepEqual(await store.batches.getBatch("rename"), second.batch);
      assert.equal(await store.batches.getBatch("nope"), undefined);
    });

    it("gives racing previews of one name distinct versions", async () => {
      const results = await Promise.all([1, 2, 3, 4].map((n) => store.batches.createVersion(version("race", [entry(`acme/r${n}`)]), T0 + n)));
      assert.deepEqual(results.map((result) => result.version.version).sort(), [1, 2, 3, 4]);
      const batch = await store.batches.getBatch("race");
      assert.equal(batch?.latestVersion, 4);
      for (const result of results) assert.equal((await store.batches.listEntries(result.batch.id, result.version.version)).length, 1);
    });

    it("lists batches most recently changed first", async () => {
      await store.batches.createVersion(version("one", [entry("acme/a")]), T0);
      await store.batches.createVersion(version("two", [entry("acme/a")]), T0 + 1);
      await store.batches.createVersion(version("one", [entry("acme/a")]), T0 + 2);
      assert.deepEqual((await store.batches.listBatches(10)).map((batch) => [batch.name, batch.latestVersion]), [
        ["one", 2],
        ["two", 1],
      ]);
      assert.equal((await store.batches.listBatches(1)).length, 1);
    });

    it("updates entries field by field, and says when one does not exist", async () => {
      const { entries } = await store.batches.createVersion(version("upd", [entry("acme/a", { jobId: 3 })]), T0);
      const id = entries[0]!.id;
      const done = await store.batches.updateEntry(id, { state: "completed", diffStat: { files: 2, added: 5, deleted: 1 } }, T0 + 10);
      assert.equal(done.state, "completed");
      assert.deepEqual(done.diffStat, { files: 2, added: 5, deleted: 1 });
      assert.equal(done.jobId, 3, "fields not in the patch stay");
      assert.equal(done.updatedAt, T0 + 10);
      const applied = await store.batches.updateEntry(id, { apply: { state: "pushed", branch: "batch/upd", sha: "b".repeat(40), message: null, at: T0 + 20 } }, T0 + 20);
      assert.deepEqual(applied.apply, { state: "pushed", branch: "batch/upd", sha: "b".repeat(40), message: null, at: T0 + 20 });
      const retried = await store.batches.updateEntry(id, { state: "queued", jobId: 9, diffStat: null, failureMessage: null, apply: null }, T0 + 30);
      assert.equal(retried.jobId, 9);
      assert.equal(retried.diffStat, null);
      assert.equal(retried.apply, null);
      assert.deepEqual(await store.batches.getEntry(id), retried);
      assert.equal(await store.batches.getEntry(id + 1000), undefined);
      await assert.rejects(store.batches.updateEntry(id + 1000, { state: "failed" }, T0), NotFoundError);
    });

    it("finds the newest completed entry that computed a cache key itself", async () => {
      const first = await store.batches.createVersion(version("cache", [entry("acme/a", { cacheKey: "k1", state: "completed", jobId: 1 }), entry("acme/b", { cacheKey: "k2", state: "failed" })]), T0);
      const original = first.entries[0]!;
      assert.equal((await store.batches.findCached("k1"))?.id, original.id);
      assert.equal(await store.batches.findCached("k2"), undefined, "failed entries are not reused");
      assert.equal(await store.batches.findCached("k3"), undefined);
      const second = await store.batches.createVersion(version("cache", [entry("acme/a", { cacheKey: "k1", state: "completed", cachedFromEntryId: original.id })]), T0 + 1);
      assert.equal(second.entries[0]?.cachedFromEntryId, original.id);
      assert.equal((await store.batches.findCached("k1"))?.id, original.id, "a cached entry never becomes a source");
      const third = await store.batches.createVersion(version("cache", [entry("acme/a", { cacheKey: "k1", state: "queued", jobId: 2 })]), T0 + 2);
      await store.batches.updateEntry(third.entries[0]!.id, { state: "completed" }, T0 + 3);
      assert.equal((await store.batches.findCached("k1"))?.id, third.entries[0]!.id, "the newest wins");
    });

    it("keeps blobs of entries, given at creation or put later", async () => {
      const binary = Buffer.from([0, 1, 2, 255, 254]);
      const { entries } = await store.batches.createVersion(
        version("blobs", [entry("acme/a", { state: "completed", blobs: { diff: Buffer.from("diff --git a/x b/x\n"), log: binary } }), entry("acme/b")]),
        T0,
      );
      const [a, b] = entries;
      assert.equal(Buffer.from((await store.batches.readBlob(a!.id, "diff"))!).toString(), "diff --git a/x b/x\n");
      assert.ok(Buffer.from((await store.batches.readBlob(a!.id, "log"))!).equals(binary));
      assert.equal(await store.batches.readBlob(b!.id, "diff"), undefined);
      await store.batches.putBlob(b!.id, "outputs", Buffer.from("{}"));
      await store.batches.putBlob(b!.id, "outputs", Buffer.from('{"a":1}'));
      assert.equal(Buffer.from((await store.batches.readBlob(b!.id, "outputs"))!).toString(), '{"a":1}');
    });
  });
}
