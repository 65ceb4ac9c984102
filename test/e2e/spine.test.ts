/**
 * The whole path on one machine: submit -> executor pulls over HTTP -> clones through the
 * coordinator -> runs steps -> streams logs -> uploads the diff -> the job ends in the right state.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("spine: coordinator + shell executor", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executors: 1 });
    const repo = await makeRepo(join(cluster.dir, "src-repo"), {
      "greeting.txt": "hello world\n",
      "old.txt": "to be deleted\n",
      "nested/keep.txt": "unchanged\n",
    });
    await cluster.api.addRepository("acme/web", repo);
  });

  after(async () => {
    await cluster.close();
  });

  it("runs a job that edits files to completion, with its logs and a diff of new, deleted and binary files", async () => {
    const submitted = await cluster.api.submit({
      repository: "acme/web",
      commit: "main",
      isolation: "none",
      files: { "input/data.json": { content: '{"n": 1}' } },
      steps: [
        { key: "edit", commands: ["sed -i 's/world/airlock/' greeting.txt", "echo step one done"] },
        { key: "more", commands: ["rm old.txt", "printf 'A\\000B' > blob.bin", "cat input/data.json", "echo to stderr >&2"] },
      ],
      outputs: { diff: true },
    });
    assert.match(submitted.commit ?? "", /^[0-9a-f]{40}$/, "commit resolved to a sha at submit");
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.deepEqual(
      job.steps.map((step) => [step.key, step.state, step.exitCode]),
      [
        ["edit", "completed", 0],
        ["more", "completed", 0],
      ],
    );
    assert.equal(job.attempt, 1);
    assert.ok(job.steps.every((step) => typeof step.durationMs === "number"));

    assert.match(await logText(cluster.api, job, "edit"), /step one done/);
    const more = await logText(cluster.api, job, "more");
    assert.match(more, /\{"n": 1\}/);
    assert.match(more, /to stderr/);
    assert.match(await logText(cluster.api, job, "prepare"), /git .*fetch/);

    const diff = (await cluster.api.artifactBytes(job.id, "diff")).toString("utf8");
    assert.match(diff, /-hello world\n\+hello airlock/);
    assert.match(diff, /diff --git a\/old.txt b\/old.txt\ndeleted file mode/);
    assert.match(diff, /diff --git a\/blob.bin b\/blob.bin\nnew file mode[\s\S]*GIT binary patch/);
    assert.match(diff, /input\/data.json/);
    assert.doesNotMatch(diff, /nested\/keep.txt/);
  });

  it("ends a job with a failing step as failed, with the step's exit code, and skips the rest", async () => {
    const submitted = await cluster.api.submit({
      repository: "acme/web",
      isolation: "none",
      steps: [
        { key: "ok", commands: ["true"] },
        { key: "boom", commands: ["echo about to fail", "exit 7", "echo never printed"] },
        { key: "after", commands: ["echo should not run"] },
      ],
    });
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "failed");
    assert.equal(job.attempt, 1, "a failed step is final: no retry");
    const boom = job.steps.find((step) => step.key === "boom");
    assert.equal(boom?.exitCode, 7);
    assert.equal(boom?.state, "failed");
    assert.equal(job.steps.find((step) => step.key === "after")?.state, "skipped");
    assert.match(job.failureMessage ?? "", /boom exited with code 7/);
    assert.doesNotMatch(await logText(cluster.api, job, "boom"), /never printed/);
  });

  it("cancels a running job: its process tree is killed and it ends canceled", async () => {
    const marker = join(cluster.dir, "cancel-marker");
    const submitted = await cluster.api.submit({
      isolation: "none",
      steps: [{ key: "long", commands: ["echo started", `(sleep 3; touch ${marker}) &`, "sleep 60"] }],
    });
    await waitForJob(cluster.api, submitted.id, (job) => job.steps[0]?.state === "running" && job.steps[0].size > 0);
    const started = Date.now();
    await cluster.api.cancel(submitted.id);
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "canceled");
    assert.ok(Date.now() - started < 5000, "cancel takes effect within a heartbeat or two");
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const { existsSync } = await import("node:fs");
    assert.equal(existsSync(marker), false, "the step's background process was killed too");
  });

  it("refuses to give a job needing more isolation to a shell executor", async () => {
    const submitted = await cluster.api.submit({ isolation: "namespace", steps: [{ commands: ["true"] }] });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const job = await cluster.api.getJob(submitted.id);
    assert.equal(job.state, "queued", "no executor with isolation >= namespace: the job waits");
    await cluster.api.cancel(submitted.id);
  });
});
