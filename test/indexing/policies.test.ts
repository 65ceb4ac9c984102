/**
 * Indexing policies on a real SQLite store and real git mirrors (no executor: the queued jobs and
 * pending indexes are what is checked): auto-index on a new HEAD, `repo sync`, the periodic sync
 * on a fake clock, an index already queued not redone (also for requests at once), and the
 * coordinator's index config taking the place of the tree's airlock-index.yaml.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FakeClock } from "../../src/common/clock.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { IndexPolicies } from "../../src/coordinator/services/index-policies.ts";
import { IndexService } from "../../src/coordinator/services/indexes.ts";
import { Repositories } from "../../src/coordinator/services/repositories.ts";
import { NotFoundError, ValidationError } from "../../src/protocol/index.ts";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { Store } from "../../src/store/index.ts";
import { baseEnv, commitFile, makeRepo, tempDir } from "../helpers/cluster.ts";

const PROJECT = { "package.json": "{}", "tsconfig.json": "{}", "src/a.ts": "export const a = 1;\n" };
const MINUTE = 60_000;

describe("indexing policies", () => {
  let dir: string;
  let store: Store;
  let clock: FakeClock;
  let repositories: Repositories;
  let indexes: IndexService;
  let policies: IndexPolicies;

  before(async () => {
    dir = await tempDir("airlock-index-policies-");
    store = createSqliteStore(join(dir, "airlock.db"));
    await store.migrate();
    clock = new FakeClock();
    const hostEnv = { PATH: baseEnv.PATH };
    repositories = new Repositories({ store, dataDir: join(dir, "data"), hostEnv, clock, logger: silentLogger });
    indexes = new IndexService({ store, clock, logger: silentLogger, repositories, hostEnv });
    policies = new IndexPolicies({ store, clock, logger: silentLogger, repositories, indexes, syncIntervalMs: 5 * MINUTE });
    policies.start();
  });

  after(async () => {
    await policies.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const jobsOf = async (repository: string): Promise<number> => (await store.jobs.listJobs({ repository, limit: 100 })).length;

  it("auto-index: turning it on indexes HEAD; a sync that finds a new HEAD indexes it; an unchanged HEAD is not redone", async () => {
    const origin = await makeRepo(join(dir, "web"), PROJECT);
    await repositories.add("acme/web", origin);
    const first = await policies.set({ repository: "acme/web", autoIndex: true });
    assert.equal(first.policy.autoIndex, true);
    const head = first.autoIndex?.head;
    assert.ok(head && first.policy.seenHead === head);
    assert.deepEqual(first.autoIndex?.plan?.entries.map((entry) => [entry.root, entry.action]), [[".", "queued"]]);
    assert.equal(await jobsOf("acme/web"), 1);

    const again = await policies.set({ repository: "acme/web", autoIndex: true });
    assert.equal(again.autoIndex, null, "HEAD was seen: nothing to do");
    const unchanged = await policies.sync({ repository: "acme/web" });
    assert.deepEqual([unchanged.head, unchanged.previousHead, unchanged.autoIndex], [head, head, null]);

    const next = await commitFile(origin, "b.ts", "export const b = 2;\n");
    const synced = await policies.sync({ repository: "acme/web" });
    assert.deepEqual([synced.head, synced.previousHead], [next, head]);
    assert.equal(synced.autoIndex?.plan?.commit, next);
    assert.deepEqual(synced.autoIndex?.plan?.entries.map((entry) => entry.action), ["queued"]);
    assert.equal(await jobsOf("acme/web"), 2);

    // The same commit asked for by hand (twice at once): the pending index is found, not redone.
    const [one, two] = await Promise.all([indexes.plan({ repository: "acme/web", commit: next }), indexes.plan({ repository: "acme/web" })]);
    assert.deepEqual([one.entries[0]?.action, two.entries[0]?.action], ["existing", "existing"]);
    assert.equal(one.entries[0]?.index?.id, synced.autoIndex?.plan?.entries[0]?.index?.id);
    assert.equal(await jobsOf("acme/web"), 2);
  });

  it("requests for a new commit at once queue one job", async () => {
    const origin = await makeRepo(join(dir, "api"), PROJECT);
    await repositories.add("acme/api", origin);
    const plans = await Promise.all([1, 2, 3].map(() => indexes.plan({ repository: "acme/api" })));
    assert.deepEqual(plans.map((plan) => plan.entries[0]?.action).sort(), ["existing", "existing", "queued"]);
    assert.equal(await jobsOf("acme/api"), 1);
  });

  it("the periodic sync (fake clock) fetches auto-indexed repositories and indexes a new HEAD; others are left alone", async () => {
    const origin = await makeRepo(join(dir, "svc"), PROJECT);
    await repositories.add("acme/svc", origin);
    await policies.set({ repository: "acme/svc", autoIndex: true });
    const quiet = await makeRepo(join(dir, "quiet"), PROJECT);
    await repositories.add("acme/quiet", quiet);
    const next = await commitFile(origin, "c.ts", "export const c = 3;\n");
    await commitFile(quiet, "c.ts", "export const c = 3;\n");
    assert.notEqual(await repositories.head("acme/svc"), next, "nothing fetched yet");

    clock.advance(5 * MINUTE);
    const deadline = Date.now() + 20_000;
    while ((await store.indexes.list({ repository: "acme/svc", commit: next, limit: 10 })).length === 0) {
      assert.ok(Date.now() < deadline, "the periodic sync indexed the new HEAD");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(await repositories.head("acme/svc"), next);
    assert.equal(await jobsOf("acme/svc"), 2);
    assert.equal(await jobsOf("acme/quiet"), 0, "not auto-indexed: not indexed");
  });

  it("the coordinator's index config overrides the tree's airlock-index.yaml; a bad one is refused and loses nothing", async () => {
    const origin = await makeRepo(join(dir, "mono"), {
      "airlock-index.yaml": "roots: [{ path: a }]\n",
      "a/package.json": "{}",
      "a/tsconfig.json": "{}",
      "b/package.json": "{}",
      "b/tsconfig.json": "{}",
    });
    await repositories.add("acme/mono", origin);
    const fromTree = await indexes.plan({ repository: "acme/mono", dryRun: true });
    assert.deepEqual(fromTree.entries.map((entry) => [entry.root, entry.source]), [["a", "override"]]);

    await policies.set({ repository: "acme/mono", indexConfig: "roots:\n  - path: b\n    install: []\n" });
    const fromCoordinator = await indexes.plan({ repository: "acme/mono", dryRun: true });
    assert.deepEqual(fromCoordinator.entries.map((entry) => [entry.root, entry.source, entry.spec.steps.map((step) => step.key).join(",")]), [["b", "coordinator", "index"]]);

    await assert.rejects(policies.set({ repository: "acme/mono", indexConfig: "roots:\n  - path: ../b\n" }), (error: Error) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /invalid index config.*roots\.0\.path.*could leave the workspace/);
      return true;
    });
    await assert.rejects(policies.set({ repository: "acme/mono", indexConfig: "roots: [\n" }), /index config is not valid YAML/);
    assert.equal((await store.indexes.getPolicy("acme/mono"))?.config, "roots:\n  - path: b\n    install: []\n", "the refused config changed nothing");

    await policies.set({ repository: "acme/mono", indexConfig: null });
    assert.deepEqual((await indexes.plan({ repository: "acme/mono", dryRun: true })).entries.map((entry) => entry.source), ["override"]);
    await assert.rejects(policies.set({ repository: "acme/none", autoIndex: true }), NotFoundError);
  });

  it("auto-index of a HEAD with nothing to index says why, and does not retry that HEAD", async () => {
    const origin = await makeRepo(join(dir, "docs"), { "README.md": "docs\n" });
    await repositories.add("acme/docs", origin);
    const result = await policies.set({ repository: "acme/docs", autoIndex: true });
    assert.match(result.autoIndex?.error ?? "", /^nothing to index in acme\/docs/);
    assert.equal((await policies.sync({ repository: "acme/docs" })).autoIndex, null);
  });

  it("a fetch for a submitted ref also looks at HEAD", async () => {
    const origin = await makeRepo(join(dir, "lib"), PROJECT);
    await repositories.add("acme/lib", origin);
    await policies.set({ repository: "acme/lib", autoIndex: true });
    const next = await commitFile(origin, "d.ts", "export const d = 4;\n");
    await repositories.resolveCommit("acme/lib", "main");
    const deadline = Date.now() + 20_000;
    while ((await store.indexes.list({ repository: "acme/lib", commit: next, limit: 10 })).length === 0) {
      assert.ok(Date.now() < deadline, "the fetch's new HEAD was indexed");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
});
