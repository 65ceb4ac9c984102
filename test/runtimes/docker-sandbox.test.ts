/**
 * Promises of the docker and gvisor sandboxes beyond the shared suite, on the real daemon:
 * output is streamed while a step runs (not at its end); root in a step holds only the four
 * capabilities it needs and cannot gain more (no-new-privileges); it can still write workspace
 * files it does not own; megabytes of interleaved output arrive intact; the image's entrypoint
 * cannot hijack the script; a destroyed sandbox starts nothing; a missing step dir is refused.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Pool } from "undici";
import { silentLogger } from "../../src/common/logger.ts";
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { GvisorRuntime } from "../../src/runtimes/gvisor/index.ts";
import { sandboxLabels, stepScript, type Runtime, type Sandbox, type StepOutcome } from "../../src/runtimes/index.ts";
import { dockerUnavailable, IMAGES, jobContainers, SOCKET } from "./docker-target.ts";

let nextJobId = 800_000 + Math.floor(Math.random() * 100_000);

const targets: { name: string; make: () => Runtime }[] = [
  { name: "docker", make: () => new DockerRuntime({ host: SOCKET, defaultImage: IMAGES.secondary, logger: silentLogger }) },
  { name: "gvisor", make: () => new GvisorRuntime({ host: SOCKET, defaultImage: IMAGES.secondary, ociRuntime: process.env.AIRLOCK_GVISOR_RUNTIME ?? "runsc", logger: silentLogger }) },
];

for (const target of targets) {
  const runtime = target.make();
  const skip = await dockerUnavailable(runtime);
  if (skip) process.stdout.write(`# SKIP ${target.name} sandbox tests: ${skip}\n`);

  describe(`${target.name} sandbox`, { skip }, () => {
    let root: string;
    const sandboxes: Sandbox[] = [];

    before(async () => {
      root = await mkdtemp(join(tmpdir(), `airlock-${target.name}-sandbox-`));
    });
    after(async () => {
      for (const sandbox of sandboxes) await sandbox.destroy();
      await rm(root, { recursive: true, force: true });
    });

    async function sandbox(): Promise<{ box: Sandbox; workspace: string; jobId: number }> {
      nextJobId += 1;
      const workspace = join(root, `job-${nextJobId}`, "workspace");
      await mkdir(workspace, { recursive: true });
      const box = await runtime.createSandbox(
        { jobId: nextJobId, attempt: 1, executorName: "sandbox-test", workspace, scratchDir: join(root, `job-${nextJobId}`, "scratch"), resources: {}, labels: sandboxLabels("sandbox-test", nextJobId, 1), logger: silentLogger },
        new AbortController().signal,
      );
      sandboxes.push(box);
      return { box, workspace, jobId: nextJobId };
    }

    async function exec(box: Sandbox, commands: string[], options: { image?: string | undefined; dir?: string; onOutput?: (text: string) => void } = {}) {
      const step = { key: "probe", image: "image" in options ? options.image : IMAGES.primary, commands, dir: options.dir ?? ".", env: {} };
      const chunks: { stream: string; bytes: Buffer }[] = [];
      const timeout = AbortSignal.timeout(60_000);
      const outcome: StepOutcome = await box.exec(
        { step, env: {}, script: stepScript(commands) },
        {
          write: (chunk, stream) => {
            chunks.push({ stream, bytes: Buffer.from(chunk) });
            options.onOutput?.(Buffer.from(chunk).toString());
          },
        },
        timeout,
      );
      const text = (stream?: string) => Buffer.concat(chunks.filter((chunk) => !stream || chunk.stream === stream).map((chunk) => chunk.bytes)).toString();
      return { outcome, output: text(), stdout: text("stdout"), stderr: text("stderr") };
    }

    it("streams output while the step runs: the step waits for a file the test writes only after seeing its first line", async () => {
      const { box, workspace } = await sandbox();
      let seen = "";
      const result = await exec(box, ["echo first-line", "n=0; while [ ! -e go ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done", "test -e go", "echo second-line"], {
        onOutput: (text) => {
          seen += text;
          if (seen.includes("first-line")) void writeFile(join(workspace, "go"), "");
        },
      });
      assert.equal(result.outcome.exitCode, 0, result.output);
      assert.match(result.output, /first-line\n[\s\S]*second-line/);
    });

    it("gives root only CHOWN, DAC_OVERRIDE, FOWNER and FSETID, with no-new-privileges", async () => {
      const { box } = await sandbox();
      const result = await exec(box, ["grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status", "id -u"]);
      assert.equal(result.outcome.exitCode, 0, result.output);
      const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(result.stdout)?.[1];
      for (const name of ["CapEff", "CapPrm", "CapBnd"]) assert.equal(BigInt(`0x${field(name) ?? "ff"}`), 0x1bn, `${name} in ${result.stdout}`);
      // gVisor's /proc/<pid>/status has no NoNewPrivs line; runsc applies the flag from the spec all the same.
      if (target.name === "gvisor" && field("NoNewPrivs") === undefined) assert.doesNotMatch(result.stdout, /NoNewPrivs/);
      else assert.equal(field("NoNewPrivs"), "1");
      // gVisor lets mknod make a node in its own filesystem, but no host device stands behind it.
      const denied = await exec(box, [
        "mknod /tmp/mem c 1 1 2>/dev/null && head -c 1 /tmp/mem >/dev/null 2>&1 && echo HOST-MEMORY-READ || true",
        "hostname changed 2>/dev/null && echo HOSTNAME-CHANGED || true",
      ]);
      assert.equal(denied.outcome.exitCode, 0, denied.output);
      assert.doesNotMatch(denied.output, /HOST-MEMORY-READ|HOSTNAME-CHANGED/);
    });

    it("lets a root step write a workspace file owned by another user", async () => {
      const { box, workspace } = await sandbox();
      await writeFile(join(workspace, "theirs.txt"), "before\n", { mode: 0o600 });
      await chown(join(workspace, "theirs.txt"), 4321, 4321);
      const result = await exec(box, ["echo after >> theirs.txt", "touch new.txt"]);
      assert.equal(result.outcome.exitCode, 0, result.output);
      assert.equal(await readFile(join(workspace, "theirs.txt"), "utf8"), "before\nafter\n");
    });

    it("delivers megabytes of interleaved stdout and stderr intact, each on its stream", async () => {
      const { box } = await sandbox();
      const result = await exec(box, ["for i in 1 2 3; do head -c 1000000 /dev/zero | tr '\\0' o; head -c 500000 /dev/zero | tr '\\0' e >&2; done"]);
      assert.equal(result.outcome.exitCode, 0);
      assert.equal(result.stdout.length, 3_000_000);
      assert.match(result.stdout, /^o+$/);
      assert.equal(result.stderr.length, 1_500_000);
      assert.match(result.stderr, /^e+$/);
    });

    it("runs the script with /bin/sh whatever entrypoint the image sets", async () => {
      const pool = new Pool("http://docker", { connect: { socketPath: SOCKET } });
      const client = new DockerClient({ socketPath: SOCKET });
      const tag = `airlock-test/entrypoint-${randomBytes(4).toString("hex")}`;
      const base = await client.createContainer(`airlock-entrypoint-${randomBytes(4).toString("hex")}`, { Image: IMAGES.primary, Cmd: ["true"] });
      try {
        const changes = 'ENTRYPOINT ["/bin/false"]';
        const committed = await pool.request({ method: "POST", path: `/v1.41/commit?container=${base}&repo=${tag}&tag=latest&changes=${encodeURIComponent(changes)}` });
        assert.equal(committed.statusCode, 201, await committed.body.text());
        const { box } = await sandbox();
        const result = await exec(box, ["echo script-ran"], { image: tag });
        assert.equal(result.outcome.exitCode, 0, result.output);
        assert.match(result.output, /script-ran/);
      } finally {
        await client.remove(base);
        await (await pool.request({ method: "DELETE", path: `/v1.41/images/${tag}?force=1` })).body.text();
        await pool.close();
        await client.close();
      }
    });

    it("runs a step that names no image in the executor's default image", async () => {
      const { box } = await sandbox();
      const result = await exec(box, ["cat /etc/airlock-image"], { image: undefined });
      assert.equal(result.outcome.exitCode, 0, result.output);
      assert.match(result.stdout, /^tools$/m);
      assert.match(result.stderr, /default image airlock-test\/tools/);
    });

    it("refuses a step dir missing from the workspace, and starts nothing once destroyed", async () => {
      const { box, jobId } = await sandbox();
      const missing = await exec(box, ["true"], { dir: "no/such/dir" });
      assert.equal(missing.outcome.exitCode, null);
      assert.match(missing.outcome.message ?? "", /no\/such\/dir.*does not exist/);
      await box.destroy();
      await box.destroy();
      const late = await exec(box, ["touch should-not-exist"]);
      assert.equal(late.outcome.exitCode, null);
      assert.equal(late.outcome.limit, "killed");
      assert.deepEqual(await jobContainers(jobId), []);
    });
  });
}
