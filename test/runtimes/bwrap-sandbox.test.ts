/**
 * What a bwrap step sees of its sandbox, beyond the promise suite: only stdio as descriptors,
 * only its own environment, a read-only /proc (root in the sandbox is the executor's user on the
 * host, who owns /proc/sys), no network but loopback, its own hostname and cgroup root, no
 * capabilities, and the seccomp filter in force.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { sandboxLabels, stepScript, type Sandbox } from "../../src/runtimes/index.ts";
import { TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";

describe("bwrap sandbox surface", () => {
  let root: string;
  let box: Sandbox | undefined;
  let skipReason: string | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-bwrap-surface-"));
    skipReason = testImagesMissing();
    const runtime = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "data"), images: [TEST_IMAGES], logger: silentLogger });
    if (!skipReason) {
      const probe = await runtime.probe();
      if (!probe.usable) skipReason = probe.detail;
    }
    if (skipReason) {
      process.stdout.write(`# SKIP bwrap sandbox surface: ${skipReason}\n`);
      return;
    }
    await mkdir(join(root, "workspace"));
    box = await runtime.createSandbox(
      { jobId: 930_001, attempt: 1, executorName: "surface", workspace: join(root, "workspace"), scratchDir: root, resources: {}, labels: sandboxLabels("surface", 930_001, 1), logger: silentLogger },
      new AbortController().signal,
    );
  });

  after(async () => {
    await box?.destroy();
    await rm(root, { recursive: true, force: true });
  });

  async function run(commands: string[], env: Record<string, string> = {}): Promise<string> {
    assert.ok(box);
    const chunks: Buffer[] = [];
    const step = { key: "surface", image: "airlock-test/busybox", commands, dir: ".", env };
    const outcome = await box.exec({ step, env, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, AbortSignal.timeout(30_000));
    const output = Buffer.concat(chunks).toString("utf8");
    assert.equal(outcome.exitCode, 0, output);
    return output;
  }

  it("has only stdio open, and only its own environment", async (t) => {
    if (!box) return t.skip(skipReason);
    process.env.AIRLOCK_SURFACE_HOST_ONLY = "host-only-value";
    const output = await run(["echo fds: $(ls /proc/self/fd)", "env | sort"], { STEP_VALUE: "it's \"quoted\" $HOME `x`\nsecond line" });
    delete process.env.AIRLOCK_SURFACE_HOST_ONLY;
    const fds = (/^fds: (.*)$/m.exec(output)?.[1] ?? "").split(" ").map(Number);
    assert.ok(fds.includes(0) && fds.includes(2), output);
    // ls's own descriptor for /proc/self/fd may show as 3.
    assert.deepEqual(
      fds.filter((fd) => fd > 3),
      [],
      `descriptors: ${fds.join(" ")}`,
    );
    assert.match(output, /^STEP_VALUE=it's "quoted" \$HOME `x`\nsecond line$/m, "values pass through the launcher unchanged");
    assert.doesNotMatch(output, /host-only-value|AIRLOCK_SURFACE/);
  });

  it("cannot write /proc, has no capabilities, no network but loopback, its own hostname and cgroup root, and the seccomp filter", async (t) => {
    if (!box) return t.skip(skipReason);
    const output = await run([
      "echo 0 > /proc/sys/vm/overcommit_memory 2>/dev/null && echo WROTE-SYSCTL || echo sysctl-refused",
      "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status",
      "ls /sys/class/net 2>/dev/null || ip -o link 2>/dev/null | cut -d: -f2",
      "hostname",
      "cat /proc/self/cgroup | cut -d: -f3 | sort -u",
    ]);
    assert.match(output, /sysctl-refused/);
    assert.doesNotMatch(output, /WROTE-SYSCTL/);
    assert.match(output, /^CapEff:\s+0+$/m);
    assert.match(output, /^CapBnd:\s+0+$/m);
    assert.match(output, /^Seccomp:\s+2$/m);
    assert.match(output, /^NoNewPrivs:\s+1$/m);
    assert.match(output, /^\s*lo$/m);
    assert.doesNotMatch(output, /eth|ens|docker|veth/);
    assert.match(output, /^airlock$/m);
    assert.match(output, /^\/$/m, "the step's cgroup namespace is rooted at its own group");
  });
});
