/**
 * Results computed elsewhere (`POST /api/batches/upload`, what `batch run --local` sends) become a
 * version that show, diff, logs and apply treat like a server-side one; a later server-side
 * preview of the same spec reuses them through the cache. Bad uploads store nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ValidationError } from "../../src/protocol/index.ts";
import { makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";
import { expectedDiff, git } from "./helpers.ts";

const SPEC = `name: uploaded
on: [acme/web]
isolation: none
steps:
  - run: sed -i s/old/new/ file.txt
    outputs:
      who: { value: local }
changesetTemplate:
  commit:
    message: "Made \${{ outputs.who }}ly"
`;

describe("uploaded batch results", { timeout: 120_000 }, () => {
  let cluster: Cluster;
  let origin: string;
  let commit: string;
  let diff: string;

  before(async () => {
    cluster = await startCluster({ executors: 0 });
    origin = await makeRepo(join(cluster.dir, "web"), { "file.txt": "old text\n", "other.txt": "x\n" });
    await cluster.api.addRepository("acme/web", origin);
    commit = (await git(origin, "rev-parse", "HEAD")).trim();
    diff = await expectedDiff(origin, join(cluster.dir, "scratch"), { "file.txt": "new text\n" });
  });
  after(async () => {
    await cluster?.close();
  });

  it("refuses uploads naming unknown repositories or commits, storing nothing", async () => {
    await assert.rejects(cluster.api.uploadBatch({ spec: SPEC, entries: [{ repository: "acme/nope", commit, state: "completed", diff }] }), /unknown repositories: acme\/nope/);
    await assert.rejects(cluster.api.uploadBatch({ spec: SPEC, entries: [{ repository: "acme/web", commit: "f".repeat(40), state: "completed", diff }] }), ValidationError);
    await assert.rejects(cluster.api.uploadBatch({ spec: "name: [", entries: [{ repository: "acme/web", commit, state: "completed", diff }] }), /invalid batch spec: line 1/);
    assert.deepEqual(await cluster.api.listBatches(), []);
  });

  it("stores an upload as a version that show, diff, logs and apply use", async () => {
    const view = await cluster.api.uploadBatch({ spec: SPEC, runtime: "shell", entries: [{ repository: "acme/web", commit, state: "completed", diff, log: "ran locally\n", outputs: { who: "local" } }] });
    assert.equal(view.version.source, "local");
    assert.deepEqual(view.entries.map((entry) => [entry.repository, entry.branch, entry.state, entry.jobId, entry.diffStat]), [["acme/web", "main", "completed", null, { files: 1, added: 1, deleted: 1 }]]);
    assert.equal(await cluster.api.batchDiff("uploaded", { repository: "acme/web" }), diff);
    assert.equal(await cluster.api.batchLogs("uploaded", { repository: "acme/web" }), "ran locally\n");
    const applied = await cluster.api.applyBatch("uploaded");
    assert.deepEqual(applied.results.map((result) => [result.state, result.branch]), [["pushed", "batch/uploaded"]]);
    assert.equal((await git(origin, "log", "-1", "--format=%s", "batch/uploaded")).trim(), "Made locally");
    assert.equal(await git(origin, "show", "batch/uploaded:file.txt"), "new text\n");
  });

  it("lets a server-side preview of the same spec reuse the uploaded result", async () => {
    const view = await cluster.api.previewBatch(SPEC);
    assert.equal(view.version.version, 2);
    assert.equal(view.version.source, "server");
    assert.deepEqual(view.entries.map((entry) => [entry.cached, entry.state, entry.jobId]), [[true, "completed", null]]);
    assert.equal(await cluster.api.batchDiff("uploaded"), `# acme/web at ${commit}\n${diff}`);
    assert.equal((await cluster.api.applyBatch("uploaded")).results[0]?.state, "unchanged");
    const resolved = await cluster.api.resolveBatch(SPEC);
    assert.equal(resolved.workspaces[0]?.cacheKey, view.entries[0]?.cacheKey);
    assert.equal(resolved.workspaces[0]?.spec.template?.repository.name, "acme/web");
    assert.equal((await cluster.api.listBatches()).length, 1, "resolve stores nothing");
  });
});
