/**
 * microvm beyond the promise suite, in one VM with a small disk: a large file and symlinks
 * pointing outside come back as they are (the links never followed on the host); a write to the
 * image's root goes to the step's scratch space and the next step sees the image unchanged; the
 * disk limit is the VM's disk. And the reaper kills a VM whose executor died.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { StepFailedError } from "../../src/protocol/index.ts";
import { sandboxLabels, stepScript, type Sandbox, type StepOutcome } from "../../src/runtimes/index.ts";
import { loadGuest } from "../../src/runtimes/microvm/guest.ts";
import { MicroVmRuntime } from "../../src/runtimes/microvm/index.ts";
import { qemuArgs, qemuCommand } from "../../src/runtimes/microvm/vm.ts";
import { DATA_DIR, IMAGES, microvmRuntime, microvmUnavailable, qemuOfJob } from "./microvm-target.ts";

const skip = await microvmUnavailable();
if (skip) process.stdout.write(`# SKIP microvm sandbox tests: ${skip}\n`);

async function run(box: Sandbox, commands: string[], image = IMAGES.primary): Promise<{ outcome: StepOutcome; output: string }> {
  const chunks: Buffer[] = [];
  const step = { key: "check", image, commands, dir: ".", env: {} };
  const outcome = await box.exec({ step, env: {}, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, new AbortController().signal);
  return { outcome, output: Buffer.concat(chunks).toString("utf8") };
}

describe("microvm sandbox", { skip }, () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-microvm-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("returns a large file and outside-pointing symlinks as they are; image roots stay unchanged; the disk limit holds", async () => {
    const workspace = join(root, "job", "workspace");
    const outside = join(root, "outside");
    await mkdir(workspace, { recursive: true });
    await mkdir(outside);
    await writeFile(join(workspace, "kept.txt"), "kept\n");
    await writeFile(join(workspace, "removed.txt"), "removed\n");
    const jobId = 900_000 + Math.floor(Math.random() * 1000);
    const box = await microvmRuntime().createSandbox(
      { jobId, attempt: 1, executorName: "microvm-test", workspace, scratchDir: join(root, "job", "sandbox"), resources: { diskBytes: 256 * 1024 * 1024 }, labels: sandboxLabels("microvm-test", jobId, 1), logger: silentLogger },
      new AbortController().signal,
    );
    try {
      const write = await run(box, [
        "dd if=/dev/urandom of=big.bin bs=1M count=48 2>/dev/null",
        "sha256sum big.bin",
        "ln -s /etc/passwd passwd-link",
        `ln -s ${outside} host-link`,
        "ln -s ../../outside/planted.txt relative-link",
        `mkdir -p ${outside} && echo planted > ${outside}/planted.txt`,
        "echo through > host-link/through.txt",
        "rm removed.txt",
        "echo changed > /etc/airlock-image && cat /etc/airlock-image",
      ]);
      assert.equal(write.outcome.exitCode, 0, write.output);
      assert.match(write.output, /^changed$/m, "the step may write its root (into scratch space)");
      const hash = /^([0-9a-f]{64}) {2}big\.bin$/m.exec(write.output)?.[1];
      assert.ok(hash, write.output);
      const again = await run(box, ["cat /etc/airlock-image"]);
      assert.equal(again.output, "busybox\n", "the next step sees the image as it was");
      const fill = await run(box, ["dd if=/dev/zero of=fill.bin bs=1M count=400"]);
      assert.notEqual(fill.outcome.exitCode, 0, "a 400 MiB file does not fit a 256 MiB disk");
      assert.match(fill.output, /No space left on device/);
      assert.equal((await run(box, ["rm fill.bin"])).outcome.exitCode, 0);
      await box.destroy();
      assert.deepEqual(qemuOfJob(jobId), [], "no QEMU is left once the sandbox is destroyed");
      assert.equal(createHash("sha256").update(await readFile(join(workspace, "big.bin"))).digest("hex"), hash);
      assert.equal(await readFile(join(workspace, "kept.txt"), "utf8"), "kept\n");
      await assert.rejects(stat(join(workspace, "removed.txt")), "a file removed in the VM is removed on the host");
      for (const [name, target] of [["passwd-link", "/etc/passwd"], ["host-link", outside], ["relative-link", "../../outside/planted.txt"]]) {
        assert.ok((await lstat(join(workspace, name as string))).isSymbolicLink(), `${name} is a symlink`);
        assert.equal(await readlink(join(workspace, name as string)), target);
      }
      assert.deepEqual(await readdir(outside), [], "nothing was written through a link on the host");
      assert.equal((await lstat(join(workspace, "through.txt")).catch(() => undefined)), undefined);
    } finally {
      await box.destroy();
    }
  });

  it("a workspace larger than the job's disk limit fails the job (not an error to retry), and leaves no VM", async () => {
    const workspace = join(root, "too-big", "workspace");
    await mkdir(workspace, { recursive: true });
    await writeFile(join(workspace, "big.bin"), Buffer.alloc(24 * 1024 * 1024, 1));
    const jobId = 910_000 + Math.floor(Math.random() * 1000);
    await assert.rejects(
      microvmRuntime().createSandbox(
        { jobId, attempt: 1, executorName: "microvm-test", workspace, scratchDir: join(root, "too-big", "sandbox"), resources: { diskBytes: 8 * 1024 * 1024 }, labels: sandboxLabels("microvm-test", jobId, 1), logger: silentLogger },
        new AbortController().signal,
      ),
      (error: Error) => error instanceof StepFailedError && /does not fit in the job's disk limit of 8/.test(error.message),
    );
    assert.deepEqual(qemuOfJob(jobId), []);
    assert.deepEqual(await readdir(join(root, "too-big", "sandbox")), [], "the disk files are removed");
  });

  it("reapLeftovers kills a VM whose executor is gone, and not one whose executor lives", async () => {
    const guest = await loadGuest(DATA_DIR);
    const dead = spawn("true");
    await new Promise((resolve) => dead.once("exit", resolve));
    const start = (executorPid: number) => {
      const [command, args] = qemuCommand([...qemuArgs({ guest, accelerator: "tcg", memoryMiB: 64, cpus: 1, disks: [], env: {} }, { console: "/dev/null" }), "-S"]);
      return spawn(command, args, { env: { PATH: process.env.PATH, AIRLOCK_SANDBOX: `microvm-reap-${executorPid}`, AIRLOCK_EXECUTOR_PID: String(executorPid), AIRLOCK_HOST: hostname() }, stdio: "ignore" });
    };
    const orphan = start(dead.pid ?? 0);
    const owned = start(process.pid);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const runtime = new MicroVmRuntime({ dataDir: DATA_DIR, path: process.env.PATH ?? "", images: [], defaultImage: IMAGES.primary, logger: silentLogger });
      assert.equal(await runtime.reapLeftovers(), 1);
      await new Promise((resolve) => (orphan.exitCode !== null || orphan.signalCode !== null ? resolve(null) : orphan.once("exit", resolve)));
      assert.equal(orphan.signalCode, "SIGKILL");
      assert.equal(owned.exitCode, null, "a VM of a live executor is left alone");
      assert.ok(readFileSync(`/proc/${owned.pid}/cmdline`, "latin1").includes("qemu"));
    } finally {
      orphan.kill("SIGKILL");
      owned.kill("SIGKILL");
    }
  });
});
