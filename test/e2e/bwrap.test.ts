/**
 * Jobs through a real coordinator and a real executor running `--runtime bwrap`: steps in two
 * images editing one repository end with the right diff; a step over its memory limit fails the
 * job with the limit named; `airlock executor validate` reports the runtime.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bwrapUnavailable, TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { baseEnv, ENTRY, logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("end to end: executor with the bwrap runtime", () => {
  let cluster: Cluster | undefined;
  let skipReason: string | undefined;

  before(async () => {
    skipReason = testImagesMissing();
    skipReason ??= await bwrapUnavailable();
    if (skipReason) {
      process.stdout.write(`# SKIP bwrap end to end: ${skipReason}\n`);
      return;
    }
    cluster = await startCluster({ runtime: "bwrap", executorArgs: ["--images", TEST_IMAGES] });
    const repo = await makeRepo(join(cluster.dir, "src-repo"), { "greeting.txt": "hello world\n", "old.txt": "to be deleted\n" });
    await cluster.api.addRepository("acme/web", repo);
  });

  after(async () => {
    await cluster?.close();
  });

  it("runs a job's steps in their images and uploads the right diff", async (t) => {
    if (!cluster) return t.skip(skipReason);
    const submitted = await cluster.api.submit({
      repository: "acme/web",
      commit: "main",
      isolation: "namespace",
      steps: [
        { key: "edit", image: "airlock-test/busybox", commands: ["sed -i 's/world/bwrap/' greeting.txt", "rm old.txt", "cat /etc/airlock-image > made-by.txt"] },
        { key: "tool", image: "airlock-test/tools", commands: ["airlock-tool > tool.txt", "cat /etc/airlock-image >> made-by.txt", "echo to stderr >&2"] },
      ],
      outputs: { diff: true },
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.equal(job.state, "completed", job.failureMessage ?? JSON.stringify(job.steps));
    assert.match(await logText(cluster.api, job, "prepare"), /sandbox bwrap-job-\d+-1\.pid-\d+\.test-executor-1 ready \(runtime bwrap, isolation namespace/);
    assert.match(await logText(cluster.api, job, "tool"), /to stderr/);
    const diff = (await cluster.api.artifactBytes(job.id, "diff")).toString("utf8");
    assert.match(diff, /-hello world\n\+hello bwrap/);
    assert.match(diff, /diff --git a\/old.txt b\/old.txt\ndeleted file mode/);
    assert.match(diff, /\+\+\+ b\/made-by.txt\n@@ -0,0 \+1,2 @@\n\+busybox\n\+tools/);
    assert.match(diff, /\+airlock-tool ran in the tools image/);
  });

  it("fails a job whose step passes its memory limit, naming the limit", async (t) => {
    if (!cluster) return t.skip(skipReason);
    const submitted = await cluster.api.submit({
      repository: "acme/web",
      commit: "main",
      isolation: "namespace",
      resources: { memory: "48m" },
      steps: [{ key: "hog", image: "airlock-test/busybox", commands: ["head -c 200m /dev/zero | tail > /dev/null", "echo survived"] }],
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.equal(job.state, "failed");
    assert.match(job.failureMessage ?? "", /out of memory.*memory limit of 48/);
    assert.doesNotMatch(await logText(cluster.api, job, "hog"), /survived/);
  });

  it("airlock executor validate reports whether bwrap works here", async (t) => {
    if (!cluster) return t.skip(skipReason);
    const result = spawnSync(process.execPath, [ENTRY, "executor", "validate", "--url", cluster.coordinator.url, "--runtime", "bwrap", "--images", TEST_IMAGES, "--data", join(cluster.dir, "validate")], {
      env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: cluster.coordinator.executorToken },
      encoding: "utf8",
    });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /runtime bwrap \(namespace\)\s+usable\s+bubblewrap .*cgroup v[12].*seccomp on.*airlock-test\/busybox:latest/);
    assert.match(result.stdout, /--runtime bwrap\s+ok\s+would run jobs with bwrap/);
  });
});
