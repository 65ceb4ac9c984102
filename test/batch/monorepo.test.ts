/**
 * A monorepo with three package.json directories: three workspaces, each job run in its directory
 * (a sparse checkout of it), each diff confined to it; `if:` and `previous_step.modified_files`
 * evaluated on the executor between steps.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";
import { expectedDiff, waitForBatch } from "./helpers.ts";

const SPEC = `name: mono-rename
on:
  - mono/app
workspaces:
  - rootAtLocationOf: package.json
    in: "mono/*"
    onlyFetchWorkspace: true
isolation: none
steps:
  - key: rewrite
    run: |
      test ! -e \${{ steps.path == '.' && 'never' || '../../README.md' }}
      sed -i s/foo/bar/g *.js
  - key: record
    if: "\${{ contains(join(previous_step.modified_files, ' '), 'index.js') }}"
    run: |
      echo "\${{ steps.path }}: \${{ join(steps.modified_files, ',') }}" > WORKSPACE.txt
`;

describe("batch workspaces in a monorepo", { timeout: 120_000 }, () => {
  let cluster: Cluster;
  let origin: string;

  before(async () => {
    cluster = await startCluster({ executors: 1, executorArgs: ["--queues", "batch", "--max-jobs", "3"] });
    origin = await makeRepo(join(cluster.dir, "mono"), {
      "README.md": "foo at the root\n",
      "docs/guide.md": "foo in the docs\n",
      "packages/a/package.json": '{"name": "a"}\n',
      "packages/a/index.js": "export const a = 'foo';\n",
      "packages/b/package.json": '{"name": "b"}\n',
      "packages/b/index.js": "export const b = 'foo';\n",
      "tools/c/package.json": '{"name": "c"}\n',
      "tools/c/main.js": "console.log('foo');\n",
    });
    await cluster.api.addRepository("mono/app", origin);
  });
  after(async () => {
    await cluster?.close();
  });

  it("runs one job per package.json directory, each diff confined to its directory", async () => {
    const created = await cluster.api.previewBatch(SPEC);
    assert.deepEqual(created.entries.map((entry) => entry.workspace), ["packages/a", "packages/b", "tools/c"]);
    const view = await waitForBatch(cluster.api, "mono-rename");
    for (const entry of view.entries) assert.equal(entry.state, "completed", `${entry.workspace}: ${entry.failureMessage}`);
    const scratch = join(cluster.dir, "scratch");
    const expected: Record<string, Record<string, string>> = {
      "packages/a": { "packages/a/index.js": "export const a = 'bar';\n", "packages/a/WORKSPACE.txt": "packages/a: packages/a/index.js\n" },
      "packages/b": { "packages/b/index.js": "export const b = 'bar';\n", "packages/b/WORKSPACE.txt": "packages/b: packages/b/index.js\n" },
      "tools/c": { "tools/c/main.js": "console.log('bar');\n" },
    };
    for (const [workspace, after] of Object.entries(expected)) {
      const diff = await cluster.api.batchDiff("mono-rename", { repository: "mono/app", workspace });
      assert.equal(diff, await expectedDiff(origin, scratch, after), workspace);
      for (const path of diff.match(/^diff --git a\/(\S+)/gm) ?? []) assert.ok(path.startsWith(`diff --git a/${workspace}/`), `${workspace}: ${path}`);
    }
    const skipped = await cluster.api.getJob(view.entries.find((entry) => entry.workspace === "tools/c")!.jobId!);
    assert.deepEqual(skipped.steps.map((step) => [step.key, step.state]), [["rewrite", "completed"], ["record", "skipped"]]);
    assert.match(await cluster.api.batchLogs("mono-rename", { repository: "mono/app", workspace: "tools/c" }), /── record \(skipped\) ──/);
    const combined = await cluster.api.batchDiff("mono-rename", { repository: "mono/app" });
    assert.equal(combined.match(/^diff --git /gm)?.length, 5);
  });
});
