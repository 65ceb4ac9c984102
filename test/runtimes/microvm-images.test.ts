/**
 * Step images as VM disks, without booting a VM: from an OCI layout directory, an OCI archive and
 * the local Docker daemon (export); built once per image id, concurrent requests sharing one build;
 * a missing image named in the error. Disk contents are read back with debugfs (never mounted).
 */
import assert from "node:assert/strict";
import { readFile, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/common/exec.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { ImageStore } from "../../src/runtimes/images/store.ts";
import { ImageDisks } from "../../src/runtimes/microvm/image-disks.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { dockerUnavailable, SOCKET } from "./docker-target.ts";
import { TEST_IMAGES } from "./microvm-target.ts";

const PATH = process.env.PATH ?? "/usr/bin:/bin";

async function catFile(disk: string, path: string): Promise<string> {
  const result = await run("debugfs", ["-R", `cat ${path}`, disk], { env: { PATH } });
  return result.stdout.toString("utf8");
}

describe("microvm image disks", () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "airlock-microvm-images-"));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  it("builds a disk from an OCI layout once, however many ask at once", async (t) => {
    if (!(await stat(join(TEST_IMAGES, "tools", "oci")).catch(() => undefined))) return t.skip(`no test images in ${TEST_IMAGES}`);
    const images = new ImageDisks({ dataDir, sources: [TEST_IMAGES], hostPath: PATH, logger: silentLogger });
    const notes: string[] = [];
    const [first, second] = await Promise.all([images.disk("airlock-test/tools", (line) => notes.push(line)), images.disk("docker.io/airlock-test/tools:latest", (line) => notes.push(line))]);
    assert.equal(first.path, second.path);
    assert.equal(notes.filter((line) => line.startsWith("building")).length, 1, notes.join(""));
    assert.match(first.source, /OCI layout/);
    assert.deepEqual(first.env, ["PATH=/usr/local/bin:/usr/bin:/bin"]);
    assert.equal(await catFile(first.path, "/etc/airlock-image"), "tools\n");
    assert.match(await catFile(first.path, "/usr/local/bin/airlock-tool"), /airlock-tool ran/);
    const again: string[] = [];
    await images.disk("airlock-test/tools", (line) => again.push(line));
    assert.deepEqual(again, [], "a built disk is reused");
  });

  it("builds a disk from an OCI archive", async (t) => {
    const archive = join(TEST_IMAGES, "busybox", "oci.tar");
    if (!(await stat(archive).catch(() => undefined))) return t.skip(`no ${archive}`);
    const images = new ImageDisks({ dataDir: join(dataDir, "archive"), sources: [archive], hostPath: PATH, logger: silentLogger });
    const disk = await images.disk("airlock-test/busybox", () => undefined);
    assert.equal(await catFile(disk.path, "/etc/airlock-image"), "busybox\n");
  });

  it("builds a disk from the local Docker daemon (export)", async (t) => {
    const why = await dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger }));
    if (why) return t.skip(why);
    const images = new ImageDisks({ dataDir: join(dataDir, "docker"), sources: [], dockerSocket: SOCKET, hostPath: PATH, logger: silentLogger });
    const disk = await images.disk("airlock-test/tools", () => undefined);
    assert.match(disk.source, /^Docker daemon at /);
    assert.match(disk.digest, /^[0-9a-f]{64}$/);
    assert.equal(await catFile(disk.path, "/etc/airlock-image"), "tools\n");
  });

  it("names the image and where it looked when no source has it", async () => {
    const images = new ImageDisks({ dataDir, sources: [TEST_IMAGES], dockerSocket: join(dataDir, "no-docker.sock"), hostPath: PATH, logger: silentLogger });
    await assert.rejects(images.disk("airlock-test/not-there:1", () => undefined), /image "airlock-test\/not-there:1" not found: it is not among the OCI images this executor offers .*, and (no Docker daemon socket|the Docker daemon)/);
  });

  it("says no Docker daemon is configured when none was given", async () => {
    const images = new ImageDisks({ dataDir, sources: [TEST_IMAGES], hostPath: PATH, logger: silentLogger });
    await assert.rejects(images.disk("airlock-test/not-there:1", () => undefined), /image "airlock-test\/not-there:1" not found: .*, and no Docker daemon is configured/);
  });

  it("refuses a reference that is not an image name, naming it", async () => {
    const images = new ImageDisks({ dataDir, sources: [TEST_IMAGES], hostPath: PATH, logger: silentLogger });
    await assert.rejects(images.disk("Not An Image", () => undefined), /image "Not An Image" is not an image reference/);
  });

  it("shares bwrap's unpacking: the same image id, the rootfs cached per id, explicit oci: references", async (t) => {
    const layout = join(TEST_IMAGES, "busybox", "oci");
    if (!(await stat(layout).catch(() => undefined))) return t.skip(`no ${layout}`);
    const shared = join(dataDir, "shared");
    const images = new ImageDisks({ dataDir: shared, sources: [TEST_IMAGES], hostPath: PATH, logger: silentLogger });
    const byName = await images.disk("airlock-test/busybox", () => undefined);
    const byPath = await images.disk(`oci:${layout}`, () => undefined);
    assert.equal(byPath.path, byName.path, "one disk per image id, whatever names it");
    const bwrapStore = new ImageStore({ cacheDir: join(dataDir, "bwrap-cache"), sources: [TEST_IMAGES], logger: silentLogger });
    assert.equal(`sha256:${byName.digest}`, (await bwrapStore.resolve("airlock-test/busybox")).id);
    assert.equal(await readFile(join(shared, "microvm", "images", "rootfs", byName.digest, "rootfs", "etc", "airlock-image"), "utf8"), "busybox\n");
    await bwrapStore.close();
  });
});
