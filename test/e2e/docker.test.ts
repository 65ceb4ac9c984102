/**
 * The docker runtime end to end: a real coordinator and executor processes (`--runtime docker`),
 * real dockerd, the test images. Each test tries to break a promise: the job's diff is right
 * across steps in different images; cancel, timeouts and shutdown leave no container; leftovers
 * of a dead executor are removed at the next start (and a live executor's are not); a missing
 * image fails the job with its name. Image references that must fail point at a closed loopback
 * port, so no test ever reaches for a real registry.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { LABEL } from "../../src/runtimes/labels.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { dockerUnavailable, IMAGES, SOCKET } from "../runtimes/docker-target.ts";

const skip = await dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger }));
if (skip) process.stdout.write(`# SKIP docker end-to-end: ${skip}\n`);

async function containersOf(client: DockerClient, executorName: string, jobId?: number): Promise<string[]> {
  const labels = [`${LABEL.executor}=${executorName}`, ...(jobId === undefined ? [] : [`${LABEL.job}=${jobId}`])];
  return (await client.list(labels)).map((container) => `${container.Names?.[0] ?? container.Id} ${container.State ?? ""}`);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("docker runtime end to end", { skip }, () => {
  let cluster: Cluster;
  let client: DockerClient;
  const name = `docker-e2e-${randomBytes(4).toString("hex")}`;

  before(async () => {
    client = new DockerClient({ socketPath: SOCKET });
    cluster = await startCluster({ runtime: "docker", executors: 0, executorArgs: ["--docker-host", SOCKET] });
    cluster.startExecutor(["--name", name, "--default-image", IMAGES.secondary]);
    const repo = await makeRepo(join(cluster.dir, "small-repo"), {
      "README.md": "# small\n",
      "src/greeting.txt": "hello world\n",
      "src/old.txt": "remove me\n",
    });
    await cluster.api.addRepository("acme/small", repo);
  });

  after(async () => {
    await cluster?.close();
    for (const id of (await client.list([`${LABEL.executor}=${name}`]).catch(() => [])).map((container) => container.Id)) await client.remove(id);
    await client?.close();
  });

  it("runs a 3-step job with steps in different images to completion, with the right diff", async () => {
    const submitted = await cluster.api.submit({
      repository: "acme/small",
      isolation: "container",
      steps: [
        { key: "edit", image: IMAGES.primary, dir: "src", commands: ["sed -i 's/world/airlock/' greeting.txt", "cat /etc/airlock-image > made-by.txt", 'echo "edited in $PWD"'] },
        { key: "tool", image: IMAGES.secondary, commands: ["airlock-tool > src/tool.txt", "rm src/old.txt", "echo to-stderr >&2"], env: { WHO: "tools" } },
        { key: "default", commands: ["cat /etc/airlock-image >> src/made-by.txt", 'echo "who=$WHO step=$AIRLOCK_STEP"'], env: { WHO: "default" } },
      ],
      outputs: { diff: true },
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 90_000);
    assert.equal(job.state, "completed", job.failureMessage ?? JSON.stringify(job.steps));
    assert.deepEqual(
      job.steps.map((step) => [step.key, step.state, step.exitCode]),
      [
        ["edit", "completed", 0],
        ["tool", "completed", 0],
        ["default", "completed", 0],
      ],
    );
    assert.match(await logText(cluster.api, job, "edit"), /edited in \/work\/src/);
    assert.match(await logText(cluster.api, job, "tool"), /to-stderr/);
    const defaultLog = await logText(cluster.api, job, "default");
    assert.match(defaultLog, /names no image; using the executor's default image airlock-test\/tools/);
    assert.match(defaultLog, /who=default step=default/);
    const diff = (await cluster.api.artifactBytes(job.id, "diff")).toString("utf8");
    assert.match(diff, /-hello world\n\+hello airlock/);
    assert.match(diff, /diff --git a\/src\/old.txt b\/src\/old.txt\ndeleted file mode/);
    assert.match(diff, /\+airlock-tool ran in the tools image/);
    assert.match(diff, /\+busybox\n\+tools/, "each step ran in its own image, in order, on the same workspace");
    assert.doesNotMatch(diff, /README/);
    assert.deepEqual(await containersOf(client, name, job.id), [], "no container is left once the job ended");
  });

  it("cancel of a running job kills and removes its container", async () => {
    const submitted = await cluster.api.submit({
      isolation: "container",
      steps: [{ key: "long", image: IMAGES.primary, commands: ["echo started", "sleep 300"] }],
    });
    await waitForJob(cluster.api, submitted.id, (job) => job.steps[0]?.state === "running" && job.steps[0].size > 0, 60_000);
    assert.equal((await containersOf(client, name, submitted.id)).length, 1, "the step runs in a container");
    await cluster.api.cancel(submitted.id);
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "canceled");
    await until("the container is gone", async () => (await containersOf(client, name, submitted.id)).length === 0, 10_000);
  });

  it("a step timeout kills the step, removes its container and names the timeout", async () => {
    const submitted = await cluster.api.submit({
      isolation: "container",
      steps: [{ key: "hang", image: IMAGES.primary, timeout: "2s", commands: ["echo hanging", "sleep 300"] }],
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.equal(job.state, "failed");
    assert.match(job.failureMessage ?? "", /hang hit its timeout of 2\.00s/);
    assert.deepEqual(await containersOf(client, name, job.id), []);
  });

  it("a job naming an image that cannot be had fails with a message naming the image", async () => {
    const image = "127.0.0.1:9/airlock-test/not-there:1";
    const submitted = await cluster.api.submit({
      isolation: "container",
      steps: [{ key: "missing", image, commands: ["echo should not run"] }],
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.ok(job.state === "failed" || job.state === "errored", job.state);
    assert.ok(job.failureMessage?.includes(image), job.failureMessage ?? "no message");
    assert.match(job.failureMessage ?? "", /could not be pulled/);
    const log = await logText(cluster.api, job, "missing");
    assert.doesNotMatch(log, /should not run/);
    assert.deepEqual(await containersOf(client, name, job.id), []);
  });

  it("an executor starting on this host removes a dead executor's containers, and leaves a live one's alone", async () => {
    const dead = spawn("true");
    await new Promise((resolve) => dead.on("exit", resolve));
    const labels = (executor: string, pid: number) => ({
      [LABEL.executor]: executor,
      [LABEL.executorPid]: String(pid),
      [LABEL.host]: hostname(),
      [LABEL.job]: "424242",
      [LABEL.attempt]: "1",
    });
    const deadName = `dead-${name}`;
    const liveName = `live-${name}`;
    const make = async (executor: string, pid: number) => {
      const id = await client.createContainer(`${executor}-step`, {
        Image: IMAGES.primary,
        Cmd: ["sleep", "300"],
        Labels: labels(executor, pid),
        HostConfig: { NetworkMode: "none", LogConfig: { Type: "none", Config: {} } },
      });
      await client.start(id);
      return id;
    };
    const leftover = await make(deadName, dead.pid ?? 0);
    const alive = await make(liveName, process.pid);
    try {
      assert.equal((await containersOf(client, deadName)).length, 1);
      const second = cluster.startExecutor(["--name", `${name}-second`]);
      await until("the dead executor's container is removed", async () => (await containersOf(client, deadName)).length === 0, 30_000);
      assert.equal((await containersOf(client, liveName)).length, 1, "a live executor's container is not touched");
      await second.stop(10_000);
    } finally {
      await client.remove(leftover);
      await client.remove(alive);
    }
  });

  it("executor shutdown (second signal) stops the running job and removes its container", async () => {
    const own = `${name}-shutdown`;
    const executor = cluster.startExecutor(["--name", own, "--queues", "shutdown"]);
    const submitted = await cluster.api.submit({
      queue: "shutdown",
      isolation: "container",
      steps: [{ key: "long", image: IMAGES.primary, commands: ["echo started", "sleep 300"] }],
    });
    await waitForJob(cluster.api, submitted.id, (job) => job.steps[0]?.state === "running" && job.steps[0].size > 0, 60_000);
    assert.equal((await containersOf(client, own, submitted.id)).length, 1);
    executor.child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 300));
    executor.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([executor.exited, new Promise((resolve) => (timer = setTimeout(() => resolve("still running"), 20_000)))]);
    clearTimeout(timer);
    assert.notEqual(code, "still running", "the executor exits after the second signal");
    assert.deepEqual(await containersOf(client, own), []);
  });
});
