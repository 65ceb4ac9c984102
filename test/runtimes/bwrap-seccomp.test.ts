/**
 * The bwrap runtime's seccomp filter: a static helper (fixtures/syscalls.c) makes calls a step never
 * needs, inside a real step, where they must fail; the same helper in the same sandbox without the
 * filter shows which of them only the filter stops (so this test could fail).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/common/exec.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { namespaceArgs } from "../../src/runtimes/bwrap/args.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { BLOCKED_SYSCALLS, buildSeccompFilter } from "../../src/runtimes/bwrap/seccomp.ts";
import { sandboxLabels, stepScript, type Sandbox } from "../../src/runtimes/index.ts";
import { ROOT } from "../helpers/cluster.ts";
import { TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";

function results(output: string): Record<string, string> {
  return Object.fromEntries(
    output
      .split("\n")
      .map((line) => line.split(" "))
      .filter((parts): parts is [string, string] => parts.length === 2),
  );
}

describe("bwrap seccomp filter", () => {
  let root: string;
  let workspace: string;
  let runtime: BwrapRuntime;
  let box: Sandbox | undefined;
  let skipReason: string | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-bwrap-seccomp-"));
    workspace = join(root, "workspace");
    await mkdir(workspace);
    skipReason = testImagesMissing();
    runtime = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "data"), images: [TEST_IMAGES], logger: silentLogger });
    if (!skipReason) {
      const probe = await runtime.probe();
      if (!probe.usable) skipReason = probe.detail;
    }
    if (!skipReason) {
      const built = await run("cc", ["-static", "-O1", "-o", join(workspace, "syscalls"), join(ROOT, "test/runtimes/fixtures/syscalls.c")], { env: { PATH: process.env.PATH } }).catch(
        (error: unknown) => ({ code: null, stderr: (error as Error).message }),
      );
      if (built.code !== 0) skipReason = `cannot build the static test helper with cc (install gcc and libc6-dev): ${built.stderr.trim().split("\n").pop()}`;
    }
    if (skipReason) process.stdout.write(`# SKIP bwrap seccomp: ${skipReason}\n`);
    else {
      box = await runtime.createSandbox(
        { jobId: 900_001, attempt: 1, executorName: "seccomp-test", workspace, scratchDir: root, resources: {}, labels: sandboxLabels("seccomp-test", 900_001, 1), logger: silentLogger },
        new AbortController().signal,
      );
    }
  });

  after(async () => {
    await box?.destroy();
    await rm(root, { recursive: true, force: true });
  });

  it("the filter is a valid classic-BPF program naming every blocked call for this architecture", () => {
    const program = buildSeccompFilter("x64");
    assert.equal(program.length % 8, 0);
    assert.ok(program.length / 8 > BLOCKED_SYSCALLS.length, "one comparison per blocked call at least");
    assert.throws(() => buildSeccompFilter("mips"), /no seccomp syscall table/);
    assert.ok(buildSeccompFilter("arm64").length > 0);
  });

  it("a step cannot make the calls the filter blocks; the same sandbox without it can make some", async (t) => {
    if (skipReason || !box) return t.skip(skipReason);
    const chunks: Buffer[] = [];
    const step = { key: "syscalls", image: "airlock-test/busybox", commands: ["./syscalls"], dir: ".", env: {} };
    const outcome = await box.exec({ step, env: {}, script: stepScript(step.commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, AbortSignal.timeout(30_000));
    const inStep = results(Buffer.concat(chunks).toString("utf8"));
    assert.equal(outcome.exitCode, 0, JSON.stringify(inStep));
    assert.equal(inStep.getpid, "ok", "ordinary calls work");
    for (const call of ["add_key", "keyctl", "ptrace", "unshare", "clone_newns", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "init_module"]) {
      assert.equal(inStep[call], "EPERM", `${call} is refused in a step`);
    }
    assert.equal(inStep.clone3, "ENOSYS", "clone3 reports ENOSYS so that libc falls back to clone");

    // The control: the same namespaces and mounts, no filter. Never run the helper on the host.
    const rootfs = (await runtime.images.resolve("airlock-test/busybox")).rootfs;
    const control = await new Promise<string>((resolve, reject) => {
      const child = spawn("bwrap", [...namespaceArgs(), "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "--bind", workspace, "/work", "--chdir", "/work", "--", "./syscalls"], {
        env: {},
        stdio: ["ignore", "pipe", "inherit"],
      });
      const out: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
      child.on("error", reject);
      child.on("close", () => resolve(Buffer.concat(out).toString("utf8")));
    });
    const unfiltered = results(control);
    for (const call of ["add_key", "keyctl", "ptrace", "unshare"]) assert.equal(unfiltered[call], "ok", `${call} works without the filter: ${control}`);
    assert.notEqual(unfiltered.clone3, "ENOSYS");
  });
});
