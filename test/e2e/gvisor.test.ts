/**
 * The gvisor runtime end to end (`--runtime gvisor`): a multi-image job completes with the right
 * diff and reports gVisor as its isolation; cancel leaves no container.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import { GvisorRuntime } from "../../src/runtimes/gvisor/index.ts";
import { LABEL } from "../../src/runtimes/labels.ts";
import { logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { dockerUnavailable, IMAGES, SOCKET } from "../runtimes/docker-target.ts";

const RUNSC = process.env.AIRLOCK_GVISOR_RUNTIME ?? "runsc";
const skip = await dockerUnavailable(new GvisorRuntime({ host: SOCKET, ociRuntime: RUNSC, logger: silentLogger }));
if (skip) process.stdout.write(`# SKIP gvisor end-to-end: ${skip}\n`);

describe("gvisor runtime end to end", { skip }, () => {
  let cluster: Cluster;
  let client: DockerClient;
  const name = `gvisor-e2e-${randomBytes(4).toString("hex")}`;
  const containers = async (jobId: number) => client.list([`${LABEL.executor}=${name}`, `${LABEL.job}=${jobId}`]);

  before(async () => {
    client = new DockerClient({ socketPath: SOCKET });
    cluster = await startCluster({ runtime: "gvisor", executors: 0 });
    cluster.startExecutor(["--name", name, "--docker-host", SOCKET, "--gvisor-runtime", RUNSC]);
    await cluster.api.addRepository("acme/tiny", await makeRepo(join(cluster.dir, "tiny"), { "a.txt": "one\n" }));
  });

  after(async () => {
    await cluster?.close();
    for (const container of await client.list([`${LABEL.executor}=${name}`]).catch(() => [])) await client.remove(container.Id);
    await client?.close();
  });

  it("runs a job in gVisor: steps in two images edit the workspace in order; the diff is right", async () => {
    const submitted = await cluster.api.submit({
      repository: "acme/tiny",
      isolation: "gvisor",
      steps: [
        { key: "first", image: IMAGES.primary, commands: ["echo two >> a.txt", "dmesg 2>/dev/null | head -n 3 || true"] },
        { key: "second", image: IMAGES.secondary, commands: ["cat /etc/airlock-image >> a.txt"] },
        { key: "third", image: IMAGES.primary, commands: ["wc -l a.txt"] },
      ],
      outputs: { diff: true },
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 90_000);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.match(await logText(cluster.api, job, "prepare"), /runtime gvisor, isolation gvisor/);
    assert.match(await logText(cluster.api, job, "third"), /3 a\.txt/);
    const diff = (await cluster.api.artifactBytes(job.id, "diff")).toString("utf8");
    assert.match(diff, / one\n\+two\n\+tools/);
    assert.deepEqual(await containers(job.id), []);
  });

  it("cancel of a running job removes its gVisor container", async () => {
    const submitted = await cluster.api.submit({ isolation: "gvisor", steps: [{ image: IMAGES.primary, commands: ["echo started", "sleep 300"] }] });
    await waitForJob(cluster.api, submitted.id, (job) => job.steps[0]?.state === "running" && job.steps[0].size > 0, 60_000);
    assert.equal((await containers(submitted.id)).length, 1);
    await cluster.api.cancel(submitted.id);
    assert.equal((await waitForJob(cluster.api, submitted.id)).state, "canceled");
    const deadline = Date.now() + 10_000;
    while ((await containers(submitted.id)).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(await containers(submitted.id), []);
  });
});
