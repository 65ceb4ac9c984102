/**
 * The executor's repository cache with real git through the coordinator: a second job fetches only
 * the delta, eight concurrent jobs of one repository all get correct workspaces from one fetch, a
 * job rewriting its .git cannot poison the next, a corrupt mirror is rebuilt, and mirrors over the
 * size cap are evicted least recently used first.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gitEnv, runChecked } from "../../src/common/exec.ts";
import { baseEnv, commitFile, logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

function mirrorOf(cluster: Cluster, repository: string): string {
  return join(cluster.dir, "executor-1", "repo-cache", `${createHash("sha256").update(repository).digest("hex").slice(0, 32)}.git`);
}

async function packs(mirror: string): Promise<Map<string, number>> {
  const dir = join(mirror, "objects", "pack");
  const names = (await readdir(dir)).filter((name) => name.endsWith(".pack"));
  return new Map(await Promise.all(names.map(async (name) => [name, (await stat(join(dir, name))).size] as [string, number])));
}

async function digest(mirror: string): Promise<string> {
  const hash = createHash("sha256");
  for (const [name] of [...(await packs(mirror))].sort()) hash.update(name).update(await readFile(join(mirror, "objects", "pack", name)));
  return hash.digest("hex");
}

/** 200 files of random text: a pack that does not compress away, so a one-file delta is small beside it. */
function bulkyFiles(): Record<string, string> {
  const files: Record<string, string> = { "app.txt": "v1\n" };
  for (let index = 0; index < 200; index += 1) files[`data/file-${index}.txt`] = `${randomBytes(768).toString("hex")}\n`;
  return files;
}

async function runJob(cluster: Cluster, repository: string, commands: string[], commit = "main"): Promise<{ output: string; prepare: string }> {
  const submitted = await cluster.api.submit({ repository, commit, isolation: "none", steps: [{ key: "look", commands }] });
  const job = await waitForJob(cluster.api, submitted.id);
  const prepare = await logText(cluster.api, job, "prepare");
  assert.equal(job.state, "completed", `${job.failureMessage}\n${prepare}`);
  return { output: await logText(cluster.api, job, "look"), prepare };
}

describe("repository cache", () => {
  let cluster: Cluster;
  let repo: string;

  before(async () => {
    cluster = await startCluster({ executorArgs: ["--max-jobs", "8"] });
    repo = await makeRepo(join(cluster.dir, "repo"), bulkyFiles());
    await cluster.api.addRepository("acme/cached", repo);
  });
  after(async () => {
    await cluster.close();
  });

  it("fetches only the delta for a second job after a one-commit change", async (t) => {
    const first = await runJob(cluster, "acme/cached", ["cat app.txt", "git rev-list --count HEAD"]);
    assert.equal(first.output, "v1\n1\n");
    const mirror = mirrorOf(cluster, "acme/cached");
    const before = await packs(mirror);
    const firstBytes = [...before.values()].reduce((sum, size) => sum + size, 0);
    assert.ok(firstBytes > 100_000, `first fetch packed ${firstBytes} bytes`);

    const again = await runJob(cluster, "acme/cached", ["cat app.txt"]);
    assert.equal(again.output, "v1\n");
    assert.match(again.prepare, /already cached/);
    assert.deepEqual(await packs(mirror), before, "an unchanged commit fetches nothing");

    const second = await commitFile(repo, "app.txt", "v2\n");
    const changed = await runJob(cluster, "acme/cached", ["cat app.txt", "git rev-parse HEAD", "git rev-list --count HEAD", "git status --porcelain | wc -l"]);
    assert.equal(changed.output, `v2\n${second}\n1\n0\n`, "shallow by default, clean work tree");
    const delta = [...(await packs(mirror))].filter(([name]) => !before.has(name)).reduce((sum, [, size]) => sum + size, 0);
    assert.ok(delta > 0, "the new commit was fetched");
    t.diagnostic(`first fetch ${firstBytes} bytes of pack, second ${delta} (${((100 * delta) / firstBytes).toFixed(2)}%)`);
    assert.ok(delta <= firstBytes * 0.05, `delta ${delta} bytes > 5% of the first fetch's ${firstBytes}`);
  });

  it("gives eight concurrent jobs of a new repository correct workspaces from one fetch", async () => {
    const other = await makeRepo(join(cluster.dir, "repo-8"), { "app.txt": "eight\n", "lib/a.txt": "a\n" });
    await cluster.api.addRepository("acme/eight", other);
    const commands = ["cat app.txt lib/a.txt", "git rev-parse HEAD", "git status --porcelain | wc -l"];
    const jobs = await Promise.all(Array.from({ length: 8 }, () => runJob(cluster, "acme/eight", commands)));
    const head = jobs[0]?.output.split("\n")[2];
    assert.match(head ?? "", /^[0-9a-f]{40}$/);
    for (const job of jobs) assert.equal(job.output, `eight\na\n${head}\n0\n`);
    assert.equal((await packs(mirrorOf(cluster, "acme/eight"))).size, 1, "one fetch into the mirror");
    assert.equal(jobs.filter((job) => /already cached/.test(job.prepare)).length, 7);
  });

  it("keeps a job that rewrites .git/objects and refs from reaching the next job or the mirror", async () => {
    const mirror = mirrorOf(cluster, "acme/cached");
    const untouched = await digest(mirror);
    const poison = [
      "chmod -R u+w .git",
      "for f in $(find .git/objects -type f); do printf poisoned > \"$f\"; done",
      "echo /tmp > .git/objects/info/alternates",
      "printf 'ref: refs/heads/evil\\n' > .git/HEAD",
      "mkdir -p .git/refs/airlock && echo 0000000000000000000000000000000000000000 > .git/refs/airlock/x",
      "echo done",
    ];
    assert.equal((await runJob(cluster, "acme/cached", poison)).output, "done\n");
    assert.equal(await digest(mirror), untouched, "the mirror's packs are byte for byte unchanged");
    const next = await runJob(cluster, "acme/cached", ["cat app.txt", "git fsck --no-dangling 2>&1 | wc -l", "cat data/file-7.txt | wc -c"]);
    assert.equal(next.output, "v2\n0\n1537\n");
  });

  it("rebuilds a corrupt mirror", async () => {
    const mirror = mirrorOf(cluster, "acme/eight");
    const [name, size] = [...(await packs(mirror))][0] ?? ["", 0];
    const path = join(mirror, "objects", "pack", name);
    await chmod(path, 0o644);
    const handle = await open(path, "r+");
    // The pack's second half (blobs come after commits and trees), short of the trailer: the commit
    // still reads, the index still names every object, the checkout fails on a blob.
    const start = Math.floor(size / 2);
    const garbage = Buffer.alloc(size - 20 - start, 0x5a);
    await handle.write(garbage, 0, garbage.length, start);
    await handle.close();
    const rebuilt = await runJob(cluster, "acme/eight", ["cat app.txt"]);
    assert.equal(rebuilt.output, "eight\n");
    assert.match(rebuilt.prepare, /rebuilding the mirror/);

    // Pack files gone while refs remain: the fetch brings the missing history again, and the mirror is whole.
    for (const file of await readdir(join(mirror, "objects", "pack"))) await rm(join(mirror, "objects", "pack", file), { force: true });
    const third = await commitFile(join(cluster.dir, "repo-8"), "app.txt", "nine\n");
    const refetched = await runJob(cluster, "acme/eight", ["cat app.txt", "git rev-parse HEAD"]);
    assert.equal(refetched.output, `nine\n${third}\n`);
    assert.match(refetched.prepare, /git fetch/);
    await runChecked("git", ["fsck", "--no-dangling"], { env: gitEnv(baseEnv, { GIT_DIR: mirror }) });
  });

  it("fetches tags without the cache, as before", async () => {
    const tagged = await runJob(cluster, "acme/eight", ["git rev-list --count HEAD", "git log -1 --format=%s"]);
    assert.match(tagged.output, /^1\n/);
    const submitted = await cluster.api.submit({ repository: "acme/eight", isolation: "none", shallowClone: false, fetchTags: true, steps: [{ key: "look", commands: ["git rev-list --count HEAD"] }] });
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "completed");
    assert.equal(await logText(cluster.api, job, "look"), "2\n");
    assert.doesNotMatch(await logText(cluster.api, job, "prepare"), /repository cache/);
  });
});

describe("repository cache eviction", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executorArgs: ["--repo-cache-max", "100k"] });
    for (const name of ["one", "two"]) await cluster.api.addRepository(`acme/${name}`, await makeRepo(join(cluster.dir, name), bulkyFiles()));
  });
  after(async () => {
    await cluster.close();
  });

  it("evicts the least recently used mirror past the cap and keeps the one just used", async () => {
    assert.equal((await runJob(cluster, "acme/one", ["cat app.txt"])).output, "v1\n");
    assert.ok(existsSync(mirrorOf(cluster, "acme/one")), "a mirror over the cap alone is kept while it is the newest");
    assert.equal((await runJob(cluster, "acme/two", ["cat app.txt"])).output, "v1\n");
    assert.ok(existsSync(mirrorOf(cluster, "acme/two")));
    assert.equal(existsSync(mirrorOf(cluster, "acme/one")), false, "the older mirror was evicted");
    const back = await runJob(cluster, "acme/one", ["cat app.txt"]);
    assert.doesNotMatch(back.prepare, /already cached/, "an evicted repository is fetched afresh");
    assert.equal(existsSync(mirrorOf(cluster, "acme/two")), false);
  });
});

describe("repository cache off", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executorArgs: ["--repo-cache-max", "off"] });
    await cluster.api.addRepository("acme/plain", await makeRepo(join(cluster.dir, "plain"), { "app.txt": "plain\n" }));
  });
  after(async () => {
    await cluster.close();
  });

  it("fetches every job's repository afresh and keeps no mirror", async () => {
    assert.equal((await runJob(cluster, "acme/plain", ["cat app.txt", "git rev-list --count HEAD"])).output, "plain\n1\n");
    assert.equal(existsSync(join(cluster.dir, "executor-1", "repo-cache")), false);
  });
});
