/**
 * The sandbox promise suite: every runtime runs it (shell.test.ts, docker.test.ts, ...).
 * Each test tries to break one promise of DESIGN.md at the Runtime/Sandbox seam, with real
 * processes: reading host files, seeing other jobs, finding the executor token or the Docker
 * socket, reaching a host loopback service, exhausting pids or memory, outliving a timeout or a
 * cancel. Runtimes with isolation `none` run only the part that applies to them (process-tree
 * kills, exit codes, env, dir), and the rest is skipped with the reason printed.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import type { ResourceLimits, StepSpec } from "../../src/protocol/index.ts";
import { sandboxLabels, stepScript, type Runtime, type Sandbox, type StepOutcome } from "../../src/runtimes/index.ts";

export interface RuntimeUnderTest {
  name: string;
  /** Builds the runtime, or says why it cannot run on this machine (the suite is then skipped). */
  setup(): Promise<{ runtime: Runtime } | { skip: string }>;
  teardown?(): Promise<void>;
  /** Two different images with busybox: /etc/airlock-image holds their names. Ignored by `shell`. */
  images: { primary: string; secondary: string };
  /** What this runtime still has running for a job (containers, processes, VMs): must be empty when a step ended. */
  leftovers(jobId: number): Promise<string[]>;
  /** False for runtimes that run steps on the host (isolation none): the isolation promises do not apply. */
  isolated: boolean;
  /** Whether the image's root filesystem is read-only to steps (bwrap, microvm). */
  readOnlyRoot?: boolean;
  /** Extra seconds a step may need to start (microVM boots). */
  slack?: number;
  /**
   * Run the checks that need no fresh sandbox of their own (no limits, nothing destroyed) in one
   * shared sandbox, for runtimes whose sandboxes are costly to boot (microvm).
   */
  shareSandbox?: boolean;
}

/** What the suite sets in its own process environment: a step must never see it. */
export const FAKE_EXECUTOR_TOKEN = "aet_promise-suite-executor-token-0123456789";

let nextJobId = 700_000 + Math.floor(Math.random() * 100_000);

export function runtimePromiseSuite(target: RuntimeUnderTest): void {
  describe(`runtime promises: ${target.name}`, () => {
    let runtime: Runtime | undefined;
    let skipReason: string | undefined;
    let root: string;
    let hostService: Server;
    let hostPort = 0;
    const sandboxes: Sandbox[] = [];

    before(async () => {
      process.env.AIRLOCK_EXECUTOR_TOKEN = FAKE_EXECUTOR_TOKEN;
      const result = await target.setup();
      if ("skip" in result) {
        skipReason = result.skip;
        process.stdout.write(`# SKIP runtime ${target.name}: ${result.skip}\n`);
      } else {
        runtime = result.runtime;
      }
      root = await mkdtemp(join(tmpdir(), `airlock-promises-${target.name}-`));
      await mkdir(join(root, "outside"), { recursive: true });
      await writeFile(join(root, "outside", "host-secret.txt"), "HOST-SECRET-CONTENT\n");
      hostService = createServer((socket) => socket.end("HOST-SERVICE-REACHED\n"));
      await new Promise<void>((resolve) => hostService.listen(0, "127.0.0.1", resolve));
      const address = hostService.address();
      hostPort = typeof address === "object" && address ? address.port : 0;
    });

    after(async () => {
      for (const sandbox of sandboxes) await sandbox.destroy().catch(() => undefined);
      await new Promise((resolve) => hostService.close(resolve));
      await target.teardown?.();
      await rm(root, { recursive: true, force: true });
    });

    /** A fresh sandbox; `prepare` fills its workspace first, as the job runner does before creating one. */
    async function sandbox(resources: ResourceLimits = {}, prepare?: (workspace: string) => Promise<void>): Promise<{ sandbox: Sandbox; workspace: string; jobId: number }> {
      assert.ok(runtime);
      nextJobId += 1;
      const jobId = nextJobId;
      const workspace = join(root, `job-${jobId}`, "workspace");
      const scratchDir = join(root, `job-${jobId}`, "sandbox");
      await mkdir(workspace, { recursive: true });
      await mkdir(scratchDir, { recursive: true });
      await prepare?.(workspace);
      const created = await runtime.createSandbox(
        { jobId, attempt: 1, executorName: "promise-suite", workspace, scratchDir, resources, labels: sandboxLabels("promise-suite", jobId, 1), logger: silentLogger },
        new AbortController().signal,
      );
      sandboxes.push(created);
      return { sandbox: created, workspace, jobId };
    }

    let shared: Promise<{ sandbox: Sandbox; workspace: string; jobId: number }> | undefined;
    /** A sandbox for checks that leave it as it was: shared between them when the target asks for it. */
    function plainSandbox(): Promise<{ sandbox: Sandbox; workspace: string; jobId: number }> {
      if (!target.shareSandbox) return sandbox();
      shared ??= sandbox();
      return shared;
    }

    async function exec(
      box: Sandbox,
      commands: string[],
      options: { image?: string; timeoutMs?: number; env?: Record<string, string>; dir?: string; abortAfterMs?: number } = {},
    ): Promise<{ outcome: StepOutcome; output: string; ms: number }> {
      const step: StepSpec = { key: "probe", image: options.image ?? target.images.primary, commands, dir: options.dir ?? ".", env: options.env ?? {} };
      const controller = new AbortController();
      const limit = options.abortAfterMs ?? options.timeoutMs ?? 60_000 + (target.slack ?? 0) * 1000;
      const timer = setTimeout(() => controller.abort({ kind: options.abortAfterMs ? "canceled" : "step-timeout" }), limit);
      const chunks: Buffer[] = [];
      const started = Date.now();
      const outcome = await box.exec({ step, env: step.env, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, controller.signal);
      clearTimeout(timer);
      return { outcome, output: Buffer.concat(chunks).toString("utf8"), ms: Date.now() - started };
    }

    const isolatedIt = (name: string, fn: () => Promise<void>) =>
      it(name, { skip: !target.isolated ? `isolation none: ${target.name} runs steps on the host by design` : false }, async (t) => {
        if (skipReason) return t.skip(skipReason);
        await fn();
      });
    const anyIt = (name: string, fn: () => Promise<void>) =>
      it(name, async (t) => {
        if (skipReason) return t.skip(skipReason);
        await fn();
      });

    anyIt("runs a step in its dir with env, and reports its exit code", async () => {
      const { sandbox: box, workspace } = await sandbox({}, (dir) => mkdir(join(dir, "sub")));
      const result = await exec(box, ["pwd", 'echo "value=$GREETING"', "echo to-stderr >&2", "touch made-here", "exit 3"], { env: { GREETING: "hi there" }, dir: "sub" });
      assert.equal(result.outcome.exitCode, 3, result.output);
      assert.match(result.output, /\/sub\n/);
      assert.match(result.output, /value=hi there/);
      assert.match(result.output, /to-stderr/);
      // The workspace is final once the sandbox is destroyed (a VM hands it back then).
      await box.destroy();
      assert.equal(await readFile(join(workspace, "sub", "made-here"), "utf8"), "");
    });

    anyIt("kills a hanging step, and everything it started, when its signal aborts (timeout)", async () => {
      const { sandbox: box, jobId } = await sandbox();
      const result = await exec(box, ["sleep 300 &", "(setsid sleep 301 &)", "echo started", "sleep 302"], { timeoutMs: 1500 });
      assert.equal(result.outcome.exitCode, null);
      assert.ok(result.ms < 1500 + 10_000 + (target.slack ?? 0) * 1000, `took ${result.ms} ms`);
      assert.deepEqual(await target.leftovers(jobId), [], "nothing of the step is left running");
    });

    anyIt("cancel stops a running step at once and leaves nothing running", async () => {
      const { sandbox: box, jobId } = await sandbox();
      const result = await exec(box, ["echo working", "sleep 300"], { abortAfterMs: 1000 });
      assert.equal(result.outcome.exitCode, null);
      await box.destroy();
      assert.deepEqual(await target.leftovers(jobId), []);
    });

    isolatedIt("a step cannot read host files outside its workspace", async () => {
      const { sandbox: box } = await plainSandbox();
      const secret = join(root, "outside", "host-secret.txt");
      // cat's own errors would echo the path it was given; what matters is content and listings.
      const result = await exec(box, [
        `cat ${secret} 2>/dev/null || true`,
        `test -e ${secret} && echo HOST-PATH-EXISTS || true`,
        "cat ../outside/host-secret.txt 2>/dev/null || true",
        "cat /etc/shadow 2>/dev/null | head -c 200 || true",
        "ls / || true",
      ]);
      assert.doesNotMatch(result.output, /HOST-SECRET-CONTENT|HOST-PATH-EXISTS/);
      assert.doesNotMatch(result.output, new RegExp(root.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    });

    isolatedIt("a step cannot see another job's workspace", async () => {
      const a = await plainSandbox();
      // With shared sandboxes (VMs) the other job needs no VM of its own: its host workspace is the target.
      const b = target.shareSandbox ? { workspace: join(root, "other-job", "workspace") } : await sandbox();
      await mkdir(b.workspace, { recursive: true });
      await writeFile(join(b.workspace, "other-job.txt"), "OTHER-JOB-DATA\n");
      const result = await exec(a.sandbox, [`cat ${b.workspace}/other-job.txt || true`, `ls ${join(b.workspace, "..")} || true`, "ls -R / 2>/dev/null | grep -c other-job.txt || true"]);
      assert.doesNotMatch(result.output, /OTHER-JOB-DATA/);
      assert.match(result.output, /^0$/m, "no file named other-job.txt is visible anywhere");
    });

    isolatedIt("a step has no Docker socket and cannot find the executor token", async () => {
      const { sandbox: box } = await plainSandbox();
      const result = await exec(box, [
        "ls -la /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock 2>&1 || true",
        "env",
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' || true",
        "cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' ' || true",
      ]);
      assert.doesNotMatch(result.output, /srw/, "no unix socket of a container daemon is visible");
      assert.doesNotMatch(result.output, new RegExp(FAKE_EXECUTOR_TOKEN));
      // pid 1 of a bwrap sandbox is bwrap: its argv once named the rootfs and the workspace.
      for (const hostPath of [root, "/.test-images/"]) assert.ok(!result.output.includes(hostPath), `no process in the sandbox shows the host path ${hostPath} in its cmdline or environ`);
    });

    isolatedIt("a step cannot reach a service listening on the host's loopback", async () => {
      const { sandbox: box } = await plainSandbox();
      const result = await exec(box, [
        `wget -q -T 3 -O - http://127.0.0.1:${hostPort}/ 2>&1 || true`,
        `nc -w 3 127.0.0.1 ${hostPort} </dev/null 2>&1 || true`,
        `nc -w 3 localhost ${hostPort} </dev/null 2>&1 || true`,
      ]);
      assert.doesNotMatch(result.output, /HOST-SERVICE-REACHED/);
    });

    isolatedIt("a fork bomb is stopped by the pids limit, with a message naming it", async () => {
      const { sandbox: box, jobId } = await sandbox({ pids: 64 });
      const result = await exec(box, ["bomb() { bomb | bomb & }", "bomb", "sleep 30"], { timeoutMs: 20_000 + (target.slack ?? 0) * 1000 });
      assert.notEqual(result.outcome.exitCode, 0);
      assert.match(`${result.outcome.message ?? ""} ${result.outcome.limit ?? ""}`, /pids|process/i, JSON.stringify(result.outcome));
      assert.deepEqual(await target.leftovers(jobId), []);
    });

    isolatedIt("a memory hog is killed by the memory limit, with a message naming it", async () => {
      const { sandbox: box } = await sandbox({ memoryBytes: 64 * 1024 * 1024 });
      // A generous bound, not a timing check: under TCG on a loaded machine filling 64 MiB takes long.
      const result = await exec(box, ["head -c 300m /dev/zero | tail > /dev/null", "echo survived"], { timeoutMs: 300_000 + (target.slack ?? 0) * 1000 });
      assert.notEqual(result.outcome.exitCode, 0, result.output);
      assert.doesNotMatch(result.output, /survived/);
      assert.match(`${result.outcome.message ?? ""} ${result.outcome.limit ?? ""}`, /memory|oom/i, JSON.stringify(result.outcome));
    });

    isolatedIt("steps with different images share the workspace, in order", async () => {
      const { sandbox: box, workspace } = await sandbox();
      const first = await exec(box, ["cat /etc/airlock-image > trail.txt"], { image: target.images.primary });
      assert.equal(first.outcome.exitCode, 0, first.output);
      const second = await exec(box, ["cat /etc/airlock-image >> trail.txt", "airlock-tool"], { image: target.images.secondary });
      assert.equal(second.outcome.exitCode, 0, second.output);
      await box.destroy();
      assert.equal(await readFile(join(workspace, "trail.txt"), "utf8"), "busybox\ntools\n");
    });

    if (target.readOnlyRoot) {
      isolatedIt("a step cannot write the image's root filesystem", async () => {
        const { sandbox: box } = await plainSandbox();
        const result = await exec(box, ["echo changed > /etc/airlock-image && echo WROTE-ROOT || true", "cat /etc/airlock-image"]);
        assert.doesNotMatch(result.output, /WROTE-ROOT/);
        assert.match(result.output, /^busybox$/m);
      });
    }
  });
}
