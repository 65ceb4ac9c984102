/**
 * The microvm runtime end to end: a real coordinator and an executor process (`--runtime
 * microvm`), real QEMU. A job whose steps use two images on one workspace completes with the
 * right diff and names its accelerator in the log; cancel of a running job (in a VM from the
 * executor's warm pool) leaves no QEMU; `executor validate` and the executors view report the idle
 * warm VMs' memory;
 * `executor install microvm` does nothing when the guest is current; `executor test-vm` boots a
 * VM and runs a command in it.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/common/exec.ts";
import { baseEnv, ENTRY, logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { warmVmsOnHost } from "../../src/runtimes/microvm/index.ts";
import { DATA_DIR, IMAGES, microvmUnavailable, qemuOfJob, TEST_IMAGES } from "../runtimes/microvm-target.ts";

const skip = await microvmUnavailable();
if (skip) process.stdout.write(`# SKIP microvm end-to-end: ${skip}\n`);

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("microvm runtime end to end", { skip }, () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ runtime: "microvm", executors: 0 });
    cluster.startExecutor(["--data", DATA_DIR, "--workspace-root", join(cluster.dir, "workspaces"), "--images", TEST_IMAGES, "--default-image", IMAGES.primary]);
    const repo = await makeRepo(join(cluster.dir, "repo"), { "README.md": "# vm\n", "src/greeting.txt": "hello world\n", "src/old.txt": "remove me\n" });
    await cluster.api.addRepository("acme/vm", repo);
  });

  after(async () => {
    await cluster?.close();
  });

  it("runs a job whose steps use two images on one workspace, with the right diff", async () => {
    const submitted = await cluster.api.submit({
      repository: "acme/vm",
      isolation: "vm",
      steps: [
        { key: "edit", image: IMAGES.primary, dir: "src", commands: ["sed -i 's/world/microvm/' greeting.txt", "cat /etc/airlock-image > made-by.txt", "rm old.txt", 'echo "edited in $PWD"'] },
        { key: "tool", image: IMAGES.secondary, commands: ["airlock-tool > src/tool.txt", "cat /etc/airlock-image >> src/made-by.txt", "ln -s /etc/passwd src/link"] },
      ],
      outputs: { diff: true },
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 240_000);
    assert.equal(job.state, "completed", job.failureMessage ?? JSON.stringify(job.steps));
    assert.match(await logText(cluster.api, job, "prepare"), /sandbox microvm-\d+-\d+-[0-9a-f]+-(kvm|tcg) ready \(runtime microvm, isolation vm/);
    assert.match(await logText(cluster.api, job, "edit"), /edited in \/work\/src/);
    const diff = (await cluster.api.artifactBytes(job.id, "diff")).toString("utf8");
    assert.match(diff, /-hello world\n\+hello microvm/);
    assert.match(diff, /diff --git a\/src\/old.txt b\/src\/old.txt\ndeleted file mode/);
    assert.match(diff, /\+airlock-tool ran in the tools image/);
    assert.match(diff, /\+busybox\n\+tools/, "each step ran in its own image, in order, on the same workspace");
    assert.match(diff, /new file mode 120000[\s\S]*\+\/etc\/passwd/, "the symlink comes back as a symlink");
    assert.deepEqual(qemuOfJob(job.id), [], "no QEMU outlives its job");
  });

  it("cancel of a running job kills its VM", async () => {
    const submitted = await cluster.api.submit({ isolation: "vm", steps: [{ key: "long", image: IMAGES.primary, commands: ["echo started", "sleep 300"] }] });
    await waitForJob(cluster.api, submitted.id, (job) => job.steps.some((step) => step.key === "long" && step.state === "running" && step.size > 0), 240_000);
    assert.equal(qemuOfJob(submitted.id).length, 1, "the job runs in a VM");
    await cluster.api.cancel(submitted.id);
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.equal(job.state, "canceled");
    await until("the VM is gone", () => qemuOfJob(submitted.id).length === 0, 15_000);
    // The executor keeps --warm-vms (default --max-jobs) VMs booted; the first job had given it time.
    assert.match(await readFile(join(cluster.dir, "executor-1.log"), "utf8"), /microVM taken from the warm pool/, "the job took a pre-booted VM");
  });

  it("`executor validate` reports the warm pool and the resident memory of the idle warm VMs", async () => {
    await until("the executor's pool is full again", () => warmVmsOnHost().count >= 1, 120_000);
    const result = await run(process.execPath, [ENTRY, "executor", "validate", "--url", cluster.coordinator.url, "--runtime", "microvm", "--data", DATA_DIR, "--images", TEST_IMAGES], {
      env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: cluster.coordinator.executorToken },
    });
    const text = result.stdout.toString();
    const row = /warm VMs \(--warm-vms\)\s+ok\s+1 idle VMs per kind \(with a network device, without\) of 1152 MiB guest memory each, restored from a snapshot of a booted guest, replaced after 30 min idle; on this host now: (\d+) idle warm VMs using (\d+) MiB resident \((\d+) MiB each\)/.exec(text);
    assert.ok(row, text + result.stderr);
    assert.ok(Number(row[1]) >= 1 && Number(row[2]) > 10 && Number(row[3]) > 10, `the idle VMs and their memory are counted: ${row[0]}`);
  });

  it("the executors view shows the executor's warm pool and what its idle VMs cost, from its heartbeats", async () => {
    let pool: Awaited<ReturnType<typeof cluster.api.executors>>[number]["warmPool"] = null;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      pool = (await cluster.api.executors())[0]?.warmPool ?? null;
      if (pool && pool.idle >= 1) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.ok(pool, "the executor reports its pool");
    assert.ok(pool.size >= 1 && pool.idle <= pool.size, `--warm-vms defaults to --max-jobs (1) per kind: ${JSON.stringify(pool)}`);
    assert.equal(pool.refill, "restore");
    assert.ok(pool.idle >= 1 && pool.idleRssBytes > pool.idle * 10 * 1024 * 1024, `the idle VMs' resident memory is reported: ${JSON.stringify(pool)}`);
  });

  it("`executor install microvm` is a no-op when current, and `executor test-vm` runs a command in a VM", async () => {
    const install = await run(process.execPath, [ENTRY, "executor", "install", "microvm", "--data", DATA_DIR], { env: baseEnv });
    assert.equal(install.code, 0, install.stderr);
    assert.match(install.stdout.toString(), /^up to date: microVM guest/m);
    assert.match(install.stdout.toString(), /accel {3}(KVM|TCG)/);
    const testVm = await run(process.execPath, [ENTRY, "executor", "test-vm", "--data", DATA_DIR, "--images", TEST_IMAGES, "--image", IMAGES.secondary, "--", "airlock-tool; exit 7"], { env: baseEnv });
    assert.equal(testVm.code, 7, testVm.stderr);
    assert.match(testVm.stdout.toString(), /airlock-tool ran in the tools image/);
    assert.match(testVm.stderr, /VM booted in \d+ ms \((KVM|TCG)/);
    assert.match(testVm.stderr, /\[exit code 7; \d+ ms\]/);
  });
});
