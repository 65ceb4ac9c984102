/**
 * Workspace preparation with real git through the coordinator: exact commits, shallow and full
 * clones, tags, sparse checkouts, files, and no job token left behind in the workspace.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gitEnv, runChecked } from "../../src/common/exec.ts";
import { baseEnv, commitFile, logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("workspace preparation", () => {
  let cluster: Cluster;
  let repo: string;
  let firstCommit: string;
  let secondCommit: string;

  before(async () => {
    cluster = await startCluster();
    repo = await makeRepo(join(cluster.dir, "repo"), { "src/app.txt": "v1\n", "docs/guide.txt": "guide\n", "README.md": "readme\n" });
    firstCommit = (await runChecked("git", ["rev-parse", "HEAD"], { cwd: repo, env: gitEnv(baseEnv) })).stdout.toString().trim();
    await runChecked("git", ["tag", "v1.0"], { cwd: repo, env: gitEnv(baseEnv) });
    secondCommit = await commitFile(repo, "src/app.txt", "v2\n");
    await cluster.api.addRepository("acme/app", repo);
  });
  after(async () => {
    await cluster.close();
  });

  async function run(spec: Record<string, unknown>, commands: string[]): Promise<string> {
    const submitted = await cluster.api.submit({ repository: "acme/app", isolation: "none", ...spec, steps: [{ key: "look", commands }] });
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "completed", `${job.failureMessage}\n${await logText(cluster.api, job, "prepare")}`);
    return logText(cluster.api, job, "look");
  }

  it("checks out exactly the requested commit, shallow by default", async () => {
    const output = await run({ commit: firstCommit }, ["cat src/app.txt", "git rev-parse HEAD", "git rev-list --count HEAD", "git tag | wc -l"]);
    assert.equal(output, `v1\n${firstCommit}\n1\n0\n`);
  });

  it("resolves branches at submit time and fetches full history and tags when asked", async () => {
    const output = await run({ commit: "main", shallowClone: false, fetchTags: true }, ["git rev-parse HEAD", "git rev-list --count HEAD", "git tag"]);
    assert.equal(output, `${secondCommit}\n2\nv1.0\n`);
  });

  it("checks out only the sparse paths", async () => {
    const output = await run({ sparseCheckout: ["src/*"] }, ["find . -path ./.git -prune -o -type f -print | sort"]);
    assert.equal(output, "./src/app.txt\n");
  });

  it("leaves no job token or coordinator address in the workspace's git config", async () => {
    const output = await run({}, ["cat .git/config", "git remote get-url origin", "grep -ri 'ajt_\\|extraheader\\|authorization' .git/config || echo clean"]);
    assert.match(output, /^acme\/app$/m, "origin names the repository");
    assert.match(output, /^clean$/m);
    assert.doesNotMatch(output, /\.executors\/git/);
  });

  it("writes files into the workspace and refuses to follow a repository symlink out of it", async () => {
    const output = await run({ files: { "config/settings.json": { content: "{\"a\":1}" }, "run.sh": { content: Buffer.from("echo ran\n").toString("base64"), encoding: "base64", mode: 0o755 } } }, [
      "cat config/settings.json",
      "./run.sh",
    ]);
    assert.equal(output, '{"a":1}ran\n');
    await runChecked("ln", ["-s", "/tmp", "escape"], { cwd: repo, env: baseEnv });
    const linked = await commitFile(repo, "marker.txt", "x\n");
    await runChecked("git", ["add", "escape"], { cwd: repo, env: gitEnv(baseEnv) });
    await runChecked("git", ["-c", "user.name=T", "-c", "user.email=t@t", "commit", "-q", "-m", "link"], { cwd: repo, env: gitEnv(baseEnv) });
    assert.ok(linked);
    const submitted = await cluster.api.submit({
      repository: "acme/app",
      commit: "main",
      isolation: "none",
      files: { "escape/airlock-escaped.txt": { content: "should never be written" } },
      steps: [{ commands: ["true"] }],
    });
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "failed");
    assert.match(job.failureMessage ?? "", /refusing to write escape\/airlock-escaped.txt: escape is a symlink/);
    const { existsSync } = await import("node:fs");
    assert.equal(existsSync("/tmp/airlock-escaped.txt"), false);
  });

  it("counts jobs and steps in Prometheus metrics", async () => {
    const response = await fetch(`${cluster.coordinator.url}/metrics`);
    const text = await response.text();
    assert.equal(response.status, 200);
    assert.match(text, /airlock_jobs_finished_total\{outcome="completed"\} [1-9]/);
    assert.match(text, /airlock_pickup_latency_seconds_count\{queue="default"\} [1-9]/);
    assert.match(text, /airlock_queue_wait_seconds_bucket/);
    assert.match(text, /airlock_step_duration_seconds_count\{outcome="completed"\} [1-9]/);
    assert.match(text, /airlock_executors_alive 1/);
    assert.match(text, /airlock_queue_depth/);
  });
});
