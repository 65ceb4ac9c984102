/**
 * The microvm warm pool (--warm-vms): a job takes a pre-booted VM, which is destroyed after it;
 * the next job gets another VM in which nothing job A planted in /, /tmp or /dev/shm exists (and
 * another kernel: another boot_id); the pool refills in the background; a job of another disk
 * size boots its own VM, one asking for less memory takes a warm one and is held to its limit;
 * idle VMs are replaced after their maximum age (an injected clock); closing the runtime kills the idle VMs. With a
 * forwarder, a second pool of VMs with a network device serves jobs with a network (reaching
 * their own gateway through it), while a job without one still gets a VM with no device. A dead
 * executor's pool directories are reaped. VMs are restored from a snapshot by default: two of them
 * differ in boot_id and /dev/urandom and run on the host's clock; `boot` refills boot instead.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { processAlive, SANDBOX_PROXY, sandboxLabels, stepScript, type Sandbox, type SandboxSpec } from "../../src/runtimes/index.ts";
import { MicroVmRuntime, warmVmsOnHost, type MicroVmRuntimeOptions } from "../../src/runtimes/microvm/index.ts";
import { FakeClock } from "../../src/common/clock.ts";
import { ensureForwarder } from "../../src/egress/forwarder.ts";
import { poolDir } from "../../src/runtimes/microvm/pool.ts";
import { CANNED_BODY, startFakeGateway } from "../egress/fake-gateway.ts";
import type { MicroVmSandbox } from "../../src/runtimes/microvm/sandbox.ts";
import { DATA_DIR, IMAGES, microvmUnavailable, qemuOfJob, TEST_IMAGES } from "./microvm-target.ts";

const skip = await microvmUnavailable();
if (skip) process.stdout.write(`# SKIP microvm warm pool tests: ${skip}\n`);

async function run(box: Sandbox, commands: string[]): Promise<{ exitCode: number | null; limit: string | undefined; output: string }> {
  const chunks: Buffer[] = [];
  const step = { key: "check", image: IMAGES.primary, commands, dir: ".", env: {} };
  const outcome = await box.exec({ step, env: {}, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, new AbortController().signal);
  return { exitCode: outcome.exitCode, limit: outcome.limit, output: Buffer.concat(chunks).toString("utf8") };
}

function runtime(warmVms: number, more: Partial<MicroVmRuntimeOptions> = {}): MicroVmRuntime {
  return new MicroVmRuntime({ dataDir: DATA_DIR, path: process.env.PATH ?? "", images: [TEST_IMAGES], defaultImage: IMAGES.primary, logger: silentLogger, warmVms, ...more });
}

async function waitFor(what: string, test: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function pooledPids(target: MicroVmRuntime): number[] {
  // The pool keeps its VMs private; what a test can see is the QEMU processes it started.
  return (target.pool as unknown as { idle: { vm: { pid: number } }[] }).idle.map((warm) => warm.vm.pid);
}

describe("microvm warm pool", { skip }, () => {
  let root: string;
  let jobs = 0;
  const spec = async (resources: SandboxSpec["resources"] = {}): Promise<SandboxSpec> => {
    jobs += 1;
    const jobId = 940_000 + Math.floor(Math.random() * 1000) * 10 + jobs;
    const workspace = join(root, `job-${jobId}`, "workspace");
    await mkdir(workspace, { recursive: true });
    await writeFile(join(workspace, "input.txt"), `job ${jobId}\n`);
    return { jobId, attempt: 1, executorName: "pool-test", workspace, scratchDir: join(root, `job-${jobId}`, "sandbox"), resources, labels: sandboxLabels("pool-test", jobId, 1), logger: silentLogger };
  };
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-pool-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("gives each job a fresh pre-booted VM, destroyed after it: nothing of job A is in job B's VM", async () => {
    const target = runtime(1);
    try {
      await target.start();
      await target.pool?.filled(AbortSignal.timeout(120_000));
      const stats = target.poolStats();
      assert.equal(stats?.idle, 1);
      assert.ok((stats?.idleRssBytes ?? 0) > 10 * 1024 * 1024, `an idle VM's QEMU has a resident set (${stats?.idleRssBytes} bytes)`);
      assert.ok(warmVmsOnHost().count >= 1, "validate's scan of the host finds the idle VM");
      const [firstPid] = pooledPids(target);

      const specA = await spec();
      const a = (await target.createSandbox(specA, new AbortController().signal)) as MicroVmSandbox;
      let bootA: string | undefined;
      const mark = randomBytes(8).toString("hex");
      let aPid: number | undefined;
      try {
        assert.ok(a.warm, "job A took the warm VM");
        assert.ok(a.restored, "restored from the pool's snapshot (the default refill)");
        aPid = a.vm.pid;
        assert.ok(a.warmDir && existsSync(join(a.warmDir, "workspace.ext4")), "its disks are in the pool VM's directory");
        assert.equal(aPid, firstPid);
        assert.deepEqual(qemuOfJob(specA.jobId), [aPid], "the warm VM's directory names the job that took it");
        const planted = await run(a, [
          "cat input.txt",
          `for d in / /tmp /dev/shm; do if [ -d $d ] && echo ${mark} > $d/airlock-planted; then echo planted $d; fi; done`,
          "cat /proc/sys/kernel/random/boot_id",
          "echo from-a > output.txt",
        ]);
        assert.equal(planted.exitCode, 0, planted.output);
        assert.match(planted.output, /^job \d+$/m, "the job's workspace is in the VM");
        assert.match(planted.output, /^planted \/$/m);
        assert.match(planted.output, /^planted \/tmp$/m);
        assert.match(planted.output, /^planted \/dev\/shm$/m, "and in the memory-backed /dev/shm");
        bootA = /^[0-9a-f-]{36}$/m.exec(planted.output)?.[0];
        assert.ok(bootA, planted.output);
      } finally {
        await a.destroy();
      }
      assert.equal(processAlive(aPid ?? 0), false, "job A's QEMU is gone after the job");
      assert.equal(await readFile(join(specA.workspace, "output.txt"), "utf8"), "from-a\n", "the workspace came back");
      assert.equal(existsSync(a.warmDir ?? ""), false, "job A's disks are removed");

      await waitFor("the pool to refill", () => (target.poolStats()?.idle ?? 0) === 1);
      const b = (await target.createSandbox(await spec(), new AbortController().signal)) as MicroVmSandbox;
      try {
        assert.ok(b.warm, "job B took the refilled VM");
        assert.notEqual(b.vm.pid, aPid);
        const looked = await run(b, [
          "for f in /airlock-planted /tmp/airlock-planted /dev/shm/airlock-planted; do cat $f 2>&1 || true; done",
          "ls output.txt 2>&1 || true",
          "cat /proc/sys/kernel/random/boot_id",
        ]);
        assert.doesNotMatch(looked.output, new RegExp(mark), "nothing job A planted is in job B's VM");
        assert.match(looked.output, /output\.txt: No such file/, "job B has its own workspace");
        const bootB = /^[0-9a-f-]{36}$/m.exec(looked.output)?.[0];
        assert.ok(bootB, looked.output);
        assert.notEqual(bootB, bootA, "job B's VM runs another kernel boot");
      } finally {
        await b.destroy();
      }
    } finally {
      const pids = pooledPids(target);
      await target.close();
      for (const pid of pids) assert.equal(processAlive(pid), false, "close kills the idle VMs");
      assert.deepEqual(target.poolStats()?.idle, 0);
    }
  });

  it("a job of another disk size boots its own VM, the warm one staying; one asking for less memory takes it, held to its limit", async () => {
    const target = runtime(1);
    try {
      await target.start();
      await target.pool?.filled(AbortSignal.timeout(120_000));
      const cold = (await target.createSandbox(await spec({ diskBytes: 64 * 1024 * 1024 }), new AbortController().signal)) as MicroVmSandbox;
      try {
        assert.equal(cold.warm, false, "a job with another disk size boots its own VM");
        assert.equal(target.poolStats()?.idle, 1, "the warm VM is still there");
        assert.equal((await run(cold, ["df -m . | tail -1"])).exitCode, 0);
      } finally {
        await cold.destroy();
      }
      const smaller = (await target.createSandbox(await spec({ memoryBytes: 256 * 1024 * 1024 }), new AbortController().signal)) as MicroVmSandbox;
      try {
        assert.ok(smaller.warm, "a job asking for less memory fits the warm VM (the guest's cgroup holds it to its limit)");
        const hog = await run(smaller, ["dd if=/dev/zero of=/dev/null bs=400M count=1"]);
        assert.equal(hog.limit, "memory", `400 MiB does not fit the job's 256 MiB in a 1152 MiB VM: ${hog.output}`);
      } finally {
        await smaller.destroy();
      }
    } finally {
      await target.close();
    }
  });

  it("keeps networked VMs for jobs with a network, each reaching its own gateway; jobs without one get no device", async () => {
    const gateway = await startFakeGateway(join(root, "gateway.sock"));
    const target = runtime(1);
    try {
      const forwarder = await ensureForwarder(DATA_DIR, silentLogger);
      await target.start({ forwarder });
      await Promise.all([target.pool?.filled(AbortSignal.timeout(180_000)), target.netPool?.filled(AbortSignal.timeout(180_000))]);
      assert.equal(target.poolStats()?.idle, 2, "one idle VM of each kind");
      const networked = (await target.createSandbox({ ...(await spec()), network: { gatewaySocket: join(root, "gateway.sock"), forwarder } }, new AbortController().signal)) as MicroVmSandbox;
      try {
        assert.ok(networked.warm, "the job with a network took the networked warm VM");
        assert.ok(networked.restored, "networked VMs are restored from their own pool's snapshot too");
        const out = await run(networked, ["wget -q -O- http://example.test/", "cat /proc/net/dev"].map((line) => `http_proxy=${SANDBOX_PROXY.http} ${line}`));
        assert.equal(out.exitCode, 0, out.output);
        assert.ok(out.output.includes(CANNED_BODY), `the job reached its gateway: ${out.output}`);
        assert.match(out.output, /^\s*eth0:/m);
      } finally {
        await networked.destroy();
      }
      const plain = (await target.createSandbox(await spec(), new AbortController().signal)) as MicroVmSandbox;
      try {
        assert.ok(plain.warm);
        const out = await run(plain, ["cat /proc/net/dev"]);
        assert.doesNotMatch(out.output, /eth0/, "a job without a network gets a VM without a device");
      } finally {
        await plain.destroy();
      }
    } finally {
      await target.close();
      await gateway.close();
    }
  });

  it("the next executor removes a dead executor's pool and gateway-link directories, not a live one's", async () => {
    const dead = spawnSync("true").pid;
    assert.ok(dead && !processAlive(dead));
    const deadPool = join(poolDir(DATA_DIR), `microvm-pool-${dead}-0000abcd-tcg`);
    const livePool = join(poolDir(DATA_DIR), `microvm-pool-${process.ppid}-0000abcd-tcg`);
    const deadLink = join(tmpdir(), `airlock-gw-${dead}-test`);
    for (const dir of [deadPool, livePool, deadLink]) await mkdir(dir, { recursive: true });
    try {
      assert.ok((await runtime(0).reapLeftovers()) >= 2);
      assert.equal(existsSync(deadPool), false);
      assert.equal(existsSync(deadLink), false);
      assert.equal(existsSync(livePool), true, "a live executor's pool directory stays");
    } finally {
      for (const dir of [deadPool, livePool, deadLink]) await rm(dir, { recursive: true, force: true });
    }
  });

  it("restores warm VMs from a snapshot, each with its own boot_id, RNG output and the host's clock", async () => {
    const target = runtime(2);
    try {
      await target.start();
      await target.pool?.filled(AbortSignal.timeout(180_000));
      assert.equal(target.poolStats()?.refill, "restore", "no restore failed");
      const boxes = [(await target.createSandbox(await spec(), new AbortController().signal)) as MicroVmSandbox, (await target.createSandbox(await spec(), new AbortController().signal)) as MicroVmSandbox];
      try {
        const seen = await Promise.all(
          boxes.map(async (box) => {
            assert.ok(box.warm && box.restored, "the job took a VM restored from the pool's snapshot");
            const out = await run(box, ["cat /proc/sys/kernel/random/boot_id", "echo urandom=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n')", "echo clock=$(date +%s)"]);
            assert.equal(out.exitCode, 0, out.output);
            return { bootId: /^[0-9a-f-]{36}$/m.exec(out.output)?.[0], urandom: /^urandom=([0-9a-f]{32})$/m.exec(out.output)?.[1], clock: Number(/^clock=(\d+)$/m.exec(out.output)?.[1]), output: out.output };
          }),
        );
        const [one, two] = seen as [(typeof seen)[0], (typeof seen)[0]];
        assert.ok(one.bootId && two.bootId && one.urandom && two.urandom, `${one.output}\n${two.output}`);
        assert.notEqual(one.bootId, two.bootId, "two VMs restored from one snapshot have different boot_ids");
        assert.notEqual(one.urandom, two.urandom, "and different first bytes of /dev/urandom");
        for (const each of seen) assert.ok(Math.abs(each.clock - Date.now() / 1000) < 30, `the guest's clock is the host's, not the snapshot's (${each.clock})`);
      } finally {
        await Promise.all(boxes.map((box) => box.destroy()));
      }
    } finally {
      await target.close();
    }
    assert.deepEqual(existsSync(poolDir(DATA_DIR)) ? (await readdir(poolDir(DATA_DIR))).filter((name) => name.includes(`-${process.pid}-snapshot`)) : [], [], "close removes the snapshot");
  });

  it("with --warm-vm-refill boot, boots every warm VM", async () => {
    const target = runtime(1, { warmVmRefill: "boot" });
    try {
      await target.start();
      await target.pool?.filled(AbortSignal.timeout(120_000));
      const box = (await target.createSandbox(await spec(), new AbortController().signal)) as MicroVmSandbox;
      try {
        assert.ok(box.warm);
        assert.equal(box.restored, false);
        assert.equal((await run(box, ["true"])).exitCode, 0);
      } finally {
        await box.destroy();
      }
    } finally {
      await target.close();
    }
  });

  it("replaces an idle VM older than its maximum age (an injected clock)", async () => {
    const clock = new FakeClock(Date.now());
    const target = runtime(1, { warmVmMaxAgeMs: 60 * 60_000, clock });
    try {
      await target.start();
      await target.pool?.filled(AbortSignal.timeout(180_000));
      const [old] = pooledPids(target);
      assert.ok(old);
      clock.advance(59 * 60_000);
      target.pool?.recycle();
      assert.deepEqual(pooledPids(target), [old], "a VM younger than the maximum age stays");
      assert.equal(processAlive(old), true);
      clock.advance(2 * 60_000);
      target.pool?.recycle();
      await waitFor("the old VM to be killed", () => !processAlive(old), 60_000);
      await waitFor("a replacement", () => pooledPids(target).some((pid) => pid !== old));
    } finally {
      await target.close();
    }
    assert.equal(existsSync(poolDir(DATA_DIR)) ? (await readdir(poolDir(DATA_DIR))).filter((name) => name.includes(`-${process.pid}-`)).length : 0, 0, "no pool directory of this process is left");
  });
});
