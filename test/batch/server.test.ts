/**
 * Server-side batches end to end: a real coordinator and a shell executor, 20 repositories made
 * here. A spec that rewrites a word with sed, adds a file templated with the repository's name and
 * uses a step's output in a later step: preview -> every diff exactly as git gives it; an edited
 * step -> only the entry it changes re-runs, the rest cached; apply -> one commit per origin with
 * the templated message and author; apply again -> nothing changes; a branch moved meanwhile ->
 * a conflict for that repository only.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { expectedDiff, git, makeRepos, waitForBatch } from "./helpers.ts";

const COUNT = 20;

const SPEC = `name: rename-foo
description: Rename foo to bar everywhere
on:
  - "acme/*"
isolation: none
steps:
  - key: count
    run: grep -rl foo --exclude-dir=.git . | wc -l | tr -d ' '
    outputs:
      count: { value: "\${{ trim(step.stdout) }}" }
  - key: rewrite
    run: grep -rl foo --exclude-dir=.git . | xargs sed -i 's/foo/bar/g'
  - key: note
    run: echo "\${{ outputs.count }} files had foo" > CHANGES.txt
    files:
      OWNER.md: "owned by \${{ repository.name }} (\${{ repository.branch }}) for \${{ batch.name }}\\n"
changesetTemplate:
  title: Rename foo
  branch: batch/\${{ batch.name }}
  commit:
    message: "Rename foo to bar in \${{ repository.name }} (\${{ outputs.count }} files)"
    author: { name: Batch Bot, email: bot@airlock.invalid }
`;

/** The edit: only acme/repo-07's rendered command changes (the rest render as before). */
const EDITED = SPEC.replace(
  `run: echo "\${{ outputs.count }} files had foo" > CHANGES.txt`,
  `run: echo "\${{ outputs.count }} files had foo\${{ repository.name == 'acme/repo-07' && ' (checked)' || '' }}" > CHANGES.txt`,
);

function files(index: number): Record<string, string> {
  // Repository N has 1 + N % 3 files with "foo", and files without it.
  const out: Record<string, string> = { "README.md": `repo ${index}\nnothing here\n`, "src/keep.txt": "stays as it is\n" };
  for (let n = 0; n <= index % 3; n += 1) out[`src/f${n}.txt`] = `foo ${index}.${n}\nsecond line\nfoo again\n`;
  return out;
}

function expectedAfter(index: number, name: string, note = ""): Record<string, string> {
  const changed: Record<string, string> = {};
  const count = 1 + (index % 3);
  for (let n = 0; n < count; n += 1) changed[`src/f${n}.txt`] = `bar ${index}.${n}\nsecond line\nbar again\n`;
  changed["CHANGES.txt"] = `${count} files had foo${note}\n`;
  changed["OWNER.md"] = `owned by ${name} (main) for rename-foo\n`;
  return changed;
}

describe("batch changes on executors", { timeout: 300_000 }, () => {
  let cluster: Cluster;
  let origins: Map<string, string>;
  const names = Array.from({ length: COUNT }, (_, index) => `acme/repo-${String(index + 1).padStart(2, "0")}`);

  before(async () => {
    cluster = await startCluster({ executors: 1, executorArgs: ["--queues", "batch", "--max-jobs", "4"] });
    origins = await makeRepos(cluster.api, cluster.dir, COUNT, files);
  });
  after(async () => {
    await cluster?.close();
  });

  it("previews: one job per repository, each diff exactly as expected", async () => {
    const created = await cluster.api.previewBatch(SPEC);
    assert.equal(created.version.version, 1);
    assert.deepEqual(created.entries.map((entry) => entry.repository), names);
    assert.ok(created.entries.every((entry) => entry.jobId !== null && !entry.cached));
    const view = await waitForBatch(cluster.api, "rename-foo");
    for (const entry of view.entries) assert.equal(entry.state, "completed", `${entry.repository}: ${entry.failureMessage}`);
    for (const [index, name] of names.entries()) {
      const diff = await cluster.api.batchDiff("rename-foo", { repository: name });
      assert.equal(diff, await expectedDiff(origins.get(name)!, join(cluster.dir, "scratch"), expectedAfter(index + 1, name)), name);
      const entry = view.entries.find((candidate) => candidate.repository === name)!;
      const count = 1 + ((index + 1) % 3);
      assert.deepEqual(entry.diffStat, { files: count + 2, added: count * 2 + 2, deleted: count * 2 });
    }
    const combined = await cluster.api.batchDiff("rename-foo");
    assert.equal(combined.match(/^# acme\/repo-\d\d at [0-9a-f]{40}$/gm)?.length, COUNT);
    const logs = await cluster.api.batchLogs("rename-foo", { repository: "acme/repo-03" });
    assert.match(logs, /── prepare \(completed\) ──/);
    assert.match(logs, /── rewrite \(completed\) ──/);
  });

  it("re-runs only the entry an edited step changes; the others come from the cache", async () => {
    const second = await cluster.api.previewBatch(EDITED);
    assert.equal(second.version.version, 2);
    const rerun = second.entries.filter((entry) => !entry.cached).map((entry) => entry.repository);
    assert.deepEqual(rerun, ["acme/repo-07"]);
    assert.equal(second.counts.cached, COUNT - 1);
    const view = await waitForBatch(cluster.api, "rename-foo");
    assert.ok(view.entries.every((entry) => entry.state === "completed"));
    assert.equal(await cluster.api.batchDiff("rename-foo", { repository: "acme/repo-07" }), await expectedDiff(origins.get("acme/repo-07")!, join(cluster.dir, "scratch"), expectedAfter(7, "acme/repo-07", " (checked)")));
    assert.equal(await cluster.api.batchDiff("rename-foo", { repository: "acme/repo-08" }), await expectedDiff(origins.get("acme/repo-08")!, join(cluster.dir, "scratch"), expectedAfter(8, "acme/repo-08")));
    assert.match(await cluster.api.batchLogs("rename-foo", { repository: "acme/repo-08" }), /^# cached: the result of entry \d+ \(version 1, job \d+\)/);
    const jobs = await cluster.api.listJobs({ limit: 100 });
    assert.equal(jobs.length, COUNT + 1, "one new job only");
  });

  it("applies: one commit on the branch in each origin; a branch someone else made is a conflict, the others still apply", async () => {
    // Someone already has a branch of that name in repo-20.
    const taken = origins.get("acme/repo-20")!;
    await git(taken, "checkout", "--quiet", "-b", "batch/rename-foo");
    await git(taken, "-c", "user.name=Other", "-c", "user.email=other@airlock.invalid", "commit", "--quiet", "--allow-empty", "-m", "someone else's work");
    await git(taken, "checkout", "--quiet", "main");

    const { results } = await cluster.api.applyBatch("rename-foo");
    assert.equal(results.length, COUNT);
    for (const result of results) {
      if (result.repository === "acme/repo-20") {
        assert.equal(result.state, "conflict");
        assert.match(result.message ?? "", /branch batch\/rename-foo on the origin is at/);
        continue;
      }
      assert.equal(result.state, "pushed", `${result.repository}: ${result.message}`);
      const origin = origins.get(result.repository)!;
      const index = names.indexOf(result.repository) + 1;
      const main = (await git(origin, "rev-parse", "main")).trim();
      assert.equal((await git(origin, "rev-parse", "batch/rename-foo")).trim(), result.sha);
      assert.equal((await git(origin, "rev-list", "--count", "main..batch/rename-foo")).trim(), "1");
      assert.equal((await git(origin, "rev-parse", "batch/rename-foo^")).trim(), main);
      const count = 1 + (index % 3);
      assert.equal(
        (await git(origin, "log", "-1", "--format=%an <%ae>|%cn|%B", "batch/rename-foo")).trim(),
        `Batch Bot <bot@airlock.invalid>|Batch Bot|Rename foo to bar in ${result.repository} (${count} files)`,
      );
      const expected = expectedAfter(index, result.repository, index === 7 ? " (checked)" : "");
      for (const [path, content] of Object.entries(expected)) assert.equal(await git(origin, "show", `batch/rename-foo:${path}`), content, `${result.repository} ${path}`);
      assert.equal(await git(origin, "show", "batch/rename-foo:src/keep.txt"), "stays as it is\n");
    }
    const view = await cluster.api.getBatch("rename-foo");
    assert.equal(view.counts["apply:pushed"], COUNT - 1);
    assert.equal(view.entries.find((entry) => entry.repository === "acme/repo-20")?.apply?.state, "conflict");
  });

  it("applies again without changing anything, and reports a branch moved meanwhile as a conflict", async () => {
    const before = new Map<string, string>();
    for (const [name, origin] of origins) before.set(name, (await git(origin, "rev-parse", "batch/rename-foo")).trim());
    const again = await cluster.api.applyBatch("rename-foo");
    for (const result of again.results) {
      assert.equal(result.state, result.repository === "acme/repo-20" ? "conflict" : "unchanged", `${result.repository}: ${result.message}`);
      assert.equal((await git(origins.get(result.repository)!, "rev-parse", "batch/rename-foo")).trim(), before.get(result.repository));
    }
    // Someone pushes onto repo-05's batch branch.
    const moved = origins.get("acme/repo-05")!;
    await git(moved, "checkout", "--quiet", "batch/rename-foo");
    await git(moved, "-c", "user.name=Other", "-c", "user.email=other@airlock.invalid", "commit", "--quiet", "--allow-empty", "-m", "a review fix");
    await git(moved, "checkout", "--quiet", "main");
    const movedSha = (await git(moved, "rev-parse", "batch/rename-foo")).trim();
    const third = await cluster.api.applyBatch("rename-foo", { repositories: ["acme/repo-05", "acme/repo-06"] });
    assert.deepEqual(third.results.map((result) => [result.repository, result.state]), [
      ["acme/repo-05", "conflict"],
      ["acme/repo-06", "unchanged"],
    ]);
    assert.equal((await git(moved, "rev-parse", "batch/rename-foo")).trim(), movedSha, "the conflict left the branch alone");
  });
});
