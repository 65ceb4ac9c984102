/**
 * bwrap images without a daemon: OCI layouts and archives, explicit oci:/oci-archive: references,
 * a Docker daemon's images when one answers, unpacking shared safely between sandboxes and
 * executors started at once, layer whiteouts, and entries that try to write outside the root.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { sandboxLabels, stepScript, type Sandbox, type StepOutcome } from "../../src/runtimes/index.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { writeLayout } from "../helpers/oci.ts";

let root: string;
let skipReason: string | undefined;
let nextJob = 800_000 + Math.floor(Math.random() * 100_000);
const sandboxes: Sandbox[] = [];

function runtime(dataDir: string, images: string[], dockerHost = join(root, "no-docker.sock"), defaultImage?: string): BwrapRuntime {
  return new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir, images, dockerHost, defaultImage, logger: silentLogger });
}

async function sandbox(target: BwrapRuntime): Promise<{ box: Sandbox; workspace: string }> {
  nextJob += 1;
  const jobId = nextJob;
  const workspace = join(root, `job-${jobId}`, "workspace");
  await mkdir(workspace, { recursive: true });
  const box = await target.createSandbox(
    { jobId, attempt: 1, executorName: "images-test", workspace, scratchDir: join(root, `job-${jobId}`), resources: {}, labels: sandboxLabels("images-test", jobId, 1), logger: silentLogger },
    new AbortController().signal,
  );
  sandboxes.push(box);
  return { box, workspace };
}

async function exec(box: Sandbox, image: string | undefined, commands: string[]): Promise<{ outcome: StepOutcome; output: string }> {
  const chunks: Buffer[] = [];
  const step = { key: "probe", image, commands, dir: ".", env: {} };
  const outcome = await box.exec({ step, env: {}, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, AbortSignal.timeout(60_000));
  return { outcome, output: Buffer.concat(chunks).toString("utf8") };
}

const rootfsEntries = async (dataDir: string) => readdir(join(dataDir, "bwrap", "rootfs")).catch(() => [] as string[]);

function skippable(t: TestContext): boolean {
  if (skipReason) t.skip(skipReason);
  return Boolean(skipReason);
}

describe("bwrap images", () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-bwrap-images-"));
    skipReason = testImagesMissing();
    if (!skipReason) {
      const probe = await runtime(join(root, "probe"), []).probe();
      if (!probe.usable) skipReason = probe.detail;
    }
    if (skipReason) process.stdout.write(`# SKIP bwrap images: ${skipReason}\n`);
  });

  after(async () => {
    for (const box of sandboxes) await box.destroy().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it("two sandboxes started at once with the same image share one unpacked copy", async (t) => {
    if (skippable(t)) return;
    const dataDir = join(root, "shared-once");
    const target = runtime(dataDir, [TEST_IMAGES]);
    const [a, b] = await Promise.all([sandbox(target), sandbox(target)]);
    const probe = ["stat -c %i /bin/busybox", "cat /etc/airlock-image"];
    const [first, second] = await Promise.all([exec(a.box, "airlock-test/busybox", probe), exec(b.box, "airlock-test/busybox", probe)]);
    assert.equal(first.outcome.exitCode, 0, first.output + JSON.stringify(first.outcome));
    assert.equal(second.outcome.exitCode, 0, second.output + JSON.stringify(second.outcome));
    const unpackLines = [first.output, second.output].filter((output) => /\[airlock\] image airlock-test\/busybox .* unpacked/.test(output));
    assert.equal(unpackLines.length, 1, "exactly one of the two steps unpacked the image");
    const inode = (output: string) => output.split("\n").find((line) => /^\d+$/.test(line));
    assert.equal(inode(first.output), inode(second.output), "both steps saw the same files");
    assert.deepEqual(await rootfsEntries(dataDir), [(await target.images.resolve("airlock-test/busybox")).id.slice("sha256:".length)]);
  });

  it("two executors on one data dir unpacking at once end with one complete copy", async (t) => {
    if (skippable(t)) return;
    const dataDir = join(root, "two-executors");
    const [one, two] = [runtime(dataDir, [TEST_IMAGES]), runtime(dataDir, [TEST_IMAGES])];
    const [a, b] = await Promise.all([sandbox(one), sandbox(two)]);
    const results = await Promise.all([exec(a.box, "airlock-test/tools", ["airlock-tool"]), exec(b.box, "airlock-test/tools", ["airlock-tool"])]);
    for (const result of results) {
      assert.equal(result.outcome.exitCode, 0, result.output);
      assert.match(result.output, /airlock-tool ran in the tools image/);
    }
    const entries = await rootfsEntries(dataDir);
    assert.equal(entries.length, 1, `one unpacked copy, no temporary dirs left: ${entries.join(", ")}`);
  });

  it("a half-unpacked tree of a dead executor is never used, and is reaped at start", async (t) => {
    if (skippable(t)) return;
    const dataDir = join(root, "half");
    const target = runtime(dataDir, [TEST_IMAGES]);
    let deadPid = 4_194_000;
    while (existsSync(`/proc/${deadPid}`)) deadPid += 1;
    const half = join(dataDir, "bwrap", "rootfs", `.tmp-${deadPid}-0123456789ab`);
    await mkdir(join(half, "rootfs", "etc"), { recursive: true });
    const { box } = await sandbox(target);
    const result = await exec(box, "airlock-test/busybox", ["cat /etc/airlock-image"]);
    assert.equal(result.outcome.exitCode, 0, result.output);
    assert.match(result.output, /^busybox$/m);
    assert.ok((await target.reapLeftovers()) >= 1);
    assert.equal(existsSync(half), false, "the dead executor's temporary dir is gone");
    assert.equal((await rootfsEntries(dataDir)).length, 1);
  });

  it("runs images from an OCI layout directory, by name and as oci:PATH[:REF]", async (t) => {
    if (skippable(t)) return;
    const layout = join(TEST_IMAGES, "busybox", "oci");
    const target = runtime(join(root, "layout"), [layout]);
    const { box } = await sandbox(target);
    for (const image of ["airlock-test/busybox", "airlock-test/busybox:latest", `oci:${layout}`, `oci:${layout}:latest`]) {
      const result = await exec(box, image, ["cat /etc/airlock-image"]);
      assert.equal(result.outcome.exitCode, 0, `${image}: ${result.output} ${result.outcome.message ?? ""}`);
      assert.match(result.output, /^busybox$/m, image);
    }
  });

  it("runs images from an OCI archive, by name and as oci-archive:PATH", async (t) => {
    if (skippable(t)) return;
    const archive = join(TEST_IMAGES, "tools", "oci.tar");
    const target = runtime(join(root, "archive"), [archive]);
    const { box } = await sandbox(target);
    for (const image of ["airlock-test/tools", `oci-archive:${archive}`]) {
      const result = await exec(box, image, ["cat /etc/airlock-image", "airlock-tool"]);
      assert.equal(result.outcome.exitCode, 0, `${image}: ${result.output} ${result.outcome.message ?? ""}`);
      assert.match(result.output, /^tools$/m);
    }
  });

  it("a step that names no image runs in the executor's default image, and says so", async (t) => {
    if (skippable(t)) return;
    const target = runtime(join(root, "default"), [TEST_IMAGES], undefined, "airlock-test/tools");
    const { box } = await sandbox(target);
    const result = await exec(box, undefined, ["cat /etc/airlock-image"]);
    assert.equal(result.outcome.exitCode, 0, result.output);
    assert.match(result.output, /names no image; using the executor's default image airlock-test\/tools/);
    assert.match(result.output, /^tools$/m);
  });

  it("a missing image, or a path outside the offered images, fails the step with a message naming it", async (t) => {
    if (skippable(t)) return;
    const target = runtime(join(root, "missing"), [join(TEST_IMAGES, "busybox", "oci")]);
    const { box } = await sandbox(target);
    const missing = await exec(box, "airlock-test/no-such-image", ["true"]);
    assert.notEqual(missing.outcome.exitCode, 0);
    assert.match(missing.outcome.message ?? "", /airlock-test\/no-such-image.*not found/);
    assert.match(missing.outcome.message ?? "", /no Docker daemon socket/);
    const outside = await exec(box, `oci:${join(TEST_IMAGES, "tools", "oci")}`, ["true"]);
    assert.notEqual(outside.outcome.exitCode, 0);
    assert.match(outside.outcome.message ?? "", /is not inside the image sources this executor offers/);
    const bad = await exec(box, "Not An Image!", ["true"]);
    assert.match(bad.outcome.message ?? "", /"Not An Image!" is not an image reference/);
  });

  it("applies layers in order with whiteouts, and no layer entry writes outside the root filesystem", async (t) => {
    if (skippable(t)) return;
    const busybox = await readFile(join(TEST_IMAGES, "busybox", "rootfs", "bin", "busybox"));
    const marker = `escaped-${process.pid}-${Date.now()}`;
    const layout = join(root, "layered", "oci");
    await writeLayout(layout, "airlock-test/layered:latest", [
      [
        { name: "bin/", type: "directory" },
        { name: "bin/busybox", content: busybox, mode: 0o755 },
        ...["sh", "ls", "cat", "echo", "stat"].map((applet) => ({ name: `bin/${applet}`, type: "symlink" as const, linkname: "busybox" })),
        { name: "etc/", type: "directory" },
        { name: "etc/removed.txt", content: "lower\n" },
        { name: "data/", type: "directory" },
        { name: "data/lower-a.txt", content: "a\n" },
        { name: "data/sub/", type: "directory" },
        { name: "data/sub/lower-b.txt", content: "b\n" },
        { name: "bin/setuid-tool", content: "#!/bin/sh\n", mode: 0o4755 },
        { name: "escape", type: "symlink", linkname: "/" },
        { name: "up", type: "symlink", linkname: "../../../../../../.." },
      ],
      [
        { name: "etc/.wh.removed.txt" },
        { name: "data/.wh..wh..opq" },
        { name: "data/sub/", type: "directory" },
        { name: "data/sub/upper.txt", content: "upper\n" },
        { name: `escape/etc/${marker}-abs`, content: "stayed inside\n" },
        { name: `up/etc/${marker}-rel`, content: "stayed inside\n" },
        { name: "etc/echo", type: "link", linkname: "escape/bin/busybox" },
      ],
    ]);
    const target = runtime(join(root, "layered-data"), [layout]);
    const { box } = await sandbox(target);
    const result = await exec(box, "airlock-test/layered", [
      "ls /etc /data /data/sub",
      `cat /etc/${marker}-abs /etc/${marker}-rel`,
      "cat /etc/removed.txt 2>&1 || echo no-removed",
      "/etc/echo hardlink-runs",
      "echo mode=$(stat -c %a /bin/setuid-tool)",
    ]);
    assert.equal(result.outcome.exitCode, 0, result.output);
    assert.match(result.output, /no-removed/, "the whiteout removed the lower layer's file");
    assert.doesNotMatch(result.output, /lower-a\.txt|lower-b\.txt/, "the opaque directory hides the lower layer's content");
    assert.match(result.output, /upper\.txt/);
    assert.equal(result.output.match(/stayed inside/g)?.length, 2, "writes through symlinks landed inside the root filesystem");
    assert.match(result.output, /hardlink-runs/);
    assert.match(result.output, /^mode=755$/m, "set-uid bits are dropped");
    assert.equal(existsSync(`/etc/${marker}-abs`), false, "nothing was written to the host's /etc");
    assert.equal(existsSync(`/etc/${marker}-rel`), false);
  });

  it("runs an image from a Docker daemon when one answers, exporting it once", async (t) => {
    if (skippable(t)) return;
    const socket = process.env.AIRLOCK_DOCKER_SOCKET ?? "/var/run/docker.sock";
    const docker = await import("../helpers/docker-api.ts");
    const reason = await docker.unavailable(socket);
    if (reason) {
      process.stdout.write(`# SKIP docker images: ${reason}\n`);
      return t.skip(reason);
    }
    const name = `airlock-test/bwrap-export:${process.pid}-${Date.now()}`;
    await docker.importRootfs(socket, join(TEST_IMAGES, "tools", "rootfs"), name);
    try {
      const target = runtime(join(root, "docker"), [], socket);
      const first = await exec((await sandbox(target)).box, name, ["cat /etc/airlock-image", "airlock-tool"]);
      assert.equal(first.outcome.exitCode, 0, `${first.output} ${first.outcome.message ?? ""}`);
      assert.match(first.output, /unpacked from Docker daemon/);
      assert.match(first.output, /airlock-tool ran in the tools image/);
      const second = await exec((await sandbox(target)).box, name, ["cat /etc/airlock-image"]);
      assert.equal(second.outcome.exitCode, 0, second.output);
      assert.doesNotMatch(second.output, /unpacked/, "the second job reuses the unpacked copy");
    } finally {
      await docker.removeImage(socket, name);
    }
  });
});
