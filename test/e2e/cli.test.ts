/** The `airlock` command as users run it (bin/airlock), against a real coordinator and executor. */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BIN, baseEnv, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("airlock CLI", () => {
  let cluster: Cluster;
  let env: Record<string, string | undefined>;

  const airlock = (...args: string[]) => spawnSync(BIN, args, { env, encoding: "utf8", cwd: cluster.dir });

  async function specFile(name: string, content: string): Promise<string> {
    const path = join(cluster.dir, name);
    await writeFile(path, content);
    return path;
  }

  before(async () => {
    cluster = await startCluster();
    // No token given: the CLI finds it in the coordinator's data dir.
    env = { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_DATA: cluster.coordinator.dataDir };
    await makeRepo(join(cluster.dir, "repo"), { "notes.txt": "draft\n" });
  });
  after(async () => {
    await cluster.close();
  });

  it("keeps generated tokens private in the data dir", () => {
    for (const name of ["api-token", "executor-token"]) {
      assert.equal(statSync(join(cluster.coordinator.dataDir, name)).mode & 0o777, 0o600, name);
    }
  });

  it("adds and lists repositories", () => {
    const added = airlock("repo", "add", "acme/notes", join(cluster.dir, "repo"));
    assert.equal(added.status, 0, added.stderr);
    const listed = airlock("repo", "list");
    assert.match(listed.stdout, /acme\/notes\s+[0-9a-f]{12}/);
    const bad = airlock("repo", "add", "acme/missing", join(cluster.dir, "no-such-dir"));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /cannot mirror/);
  });

  it("submits YAML, prints the job id last, and shows the job as JSON with its steps and artifacts", async () => {
    const file = await specFile(
      "job.yaml",
      "repository: acme/notes\nisolation: none\nsteps:\n  - key: finish\n    commands: ['sed -i s/draft/final/ notes.txt']\noutputs: { diff: true }\n",
    );
    const submitted = airlock("submit", file);
    assert.equal(submitted.status, 0, submitted.stderr);
    const id = Number(submitted.stdout.trim().split("\n").pop());
    assert.ok(Number.isInteger(id) && id > 0, submitted.stdout);
    await waitForJob(cluster.api, id);
    const shown = airlock("jobs", "show", String(id), "--json");
    const job = JSON.parse(shown.stdout) as Record<string, unknown> & { steps: { key: string; exitCode: number; durationMs: number }[]; artifacts: { name: string }[] };
    assert.equal(job.id, id);
    assert.equal(job.state, "completed");
    assert.equal(job.attempt, 1);
    assert.equal(job.failureMessage, null);
    assert.deepEqual(job.steps.map((step) => [step.key, step.exitCode, typeof step.durationMs]), [["finish", 0, "number"]]);
    assert.deepEqual(job.artifacts.map((artifact) => artifact.name), ["diff"]);
    assert.match(airlock("jobs", "diff", String(id)).stdout, /-draft\n\+final/);
    assert.match(airlock("jobs", "artifact", String(id), "diff").stdout, /\+final/);
    assert.match(airlock("jobs", "show", String(id)).stdout, /finish\s+completed\s+0/);
    assert.match(airlock("jobs", "list").stdout, new RegExp(`^${id}\\s+completed\\s+default\\s+acme/notes`, "m"));
    assert.match(airlock("executors").stdout, /test-executor-1\s+shell\s+default/);
    assert.match(airlock("queues").stdout, /QUEUE/);
  });

  it("follows a job: streams its logs and exits 0 when it completed, 1 when it failed", async () => {
    const good = await specFile("good.json", JSON.stringify({ isolation: "none", steps: [{ commands: ["echo first line", "sleep 0.3", "echo second line"] }] }));
    const followed = airlock("submit", good, "--follow");
    assert.equal(followed.status, 0, followed.stderr);
    assert.match(followed.stdout, /first line\nsecond line\n/);
    assert.match(followed.stdout.trim().split("\n").pop() ?? "", /^\d+$/, "the id is alone on the last line");
    const bad = await specFile("bad.yaml", "isolation: none\nsteps:\n  - commands: ['echo failing', 'exit 4']\n");
    const failed = airlock("submit", bad, "--follow");
    assert.equal(failed.status, 1);
    assert.match(failed.stderr, /failed: step step-1 exited with code 4/);
  });

  it("cancels a running job; following it exits 2", async () => {
    const file = await specFile("long.yaml", "isolation: none\nsteps:\n  - commands: ['echo started', 'sleep 60']\n");
    const child = spawn(BIN, ["submit", file, "--follow"], { env, cwd: cluster.dir });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const deadline = Date.now() + 15_000;
    while (!stdout.includes("started") && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const id = /submitted job (\d+)/.exec(stderr)?.[1];
    assert.ok(id, stderr);
    const canceled = airlock("jobs", "cancel", id);
    assert.equal(canceled.status, 0, canceled.stderr);
    assert.equal(await exited, 2);
    assert.equal((await cluster.api.getJob(Number(id))).state, "canceled");
  });

  it("explains bad input and missing things", async () => {
    const invalid = await specFile("invalid.yaml", "steps: not-a-list\n");
    const refused = airlock("submit", invalid);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /invalid job spec: steps/);
    assert.match(airlock("jobs", "show", "99999").stderr, /job 99999 does not exist/);
    assert.match(airlock("jobs", "show", "abc").stderr, /not a job id/);
    const noToken = spawnSync(BIN, ["jobs", "list"], { env: { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_DATA: join(cluster.dir, "nowhere") }, encoding: "utf8" });
    assert.match(noToken.stderr, /no API token/);
  });
});
