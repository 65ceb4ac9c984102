/**
 * Step images as read-only ext4 disks, built once per image digest into
 * <data>/microvm/images/<digest>.ext4 (with <digest>.json: the image's env and where it came
 * from) and shared by every VM.
 *
 * Concurrency: within a process, one build per digest at a time (a map of promises); across
 * processes, each build happens in its own temp dir and lands with rename(2), the .json first and
 * the .ext4 last, so a disk that exists is complete. Two executors building the same image at
 * once waste work, never corrupt it. Lookups go OCI layouts and archives first, then Docker.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile, lstat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../../../common/logger.ts";
import { SandboxError } from "../../../protocol/index.ts";
import { makeExt4 } from "../disks.ts";
import { extractTar } from "../untar.ts";
import { exportDockerImage, inspectDockerImage } from "./docker.ts";
import { findOciImage, unpackOciImage } from "./oci.ts";
import { parseImageName } from "./reference.ts";

export interface ImageDisk {
  path: string;
  digest: string;
  env: string[];
  source: string;
}

export interface ImageDisksOptions {
  dataDir: string;
  /** OCI layouts, archives, or directories holding them. */
  sources: readonly string[];
  /** Docker Engine socket path, when Docker may be asked. */
  dockerSocket?: string | undefined;
  hostPath: string;
  logger: Logger;
}

async function treeSize(dir: string): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 1;
  const walk = async (path: string): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true })) {
      inodes += 1;
      const child = join(path, entry.name);
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) bytes += (await lstat(child)).size;
    }
  };
  await walk(dir);
  return { bytes, inodes };
}

export class ImageDisks {
  private readonly options: ImageDisksOptions;
  private readonly dir: string;
  private readonly building = new Map<string, Promise<ImageDisk>>();

  constructor(options: ImageDisksOptions) {
    this.options = options;
    this.dir = join(options.dataDir, "microvm", "images");
  }

  /** The disk of `image`, building it when needed. `note` tells the step's log what takes time. */
  async disk(image: string, note: (line: string) => void): Promise<ImageDisk> {
    const name = parseImageName(image);
    await mkdir(this.dir, { recursive: true });
    const oci = await findOciImage(name, this.options.sources, join(this.dir, "archives"));
    if (oci) {
      const digest = oci.manifestDigest.replace(/^sha256:/, "");
      return this.ensure(digest, `OCI layout ${oci.layout}`, oci.env, note, (rootfs, onSkip) => unpackOciImage(oci, rootfs, onSkip));
    }
    const socket = this.options.dockerSocket;
    const docker = socket ? await inspectDockerImage(socket, image) : undefined;
    if (socket && docker) {
      const digest = docker.id.replace(/^sha256:/, "");
      return this.ensure(digest, `Docker image ${docker.id.slice(0, 19)}`, docker.env, note, (rootfs, onSkip) =>
        exportDockerImage(socket, image, { "io.airlock.purpose": "microvm-image-export" }, (tar) => extractTar(tar, rootfs, { whiteouts: false, preserveOwners: true, onSkip }).then(() => undefined)),
      );
    }
    const where = [this.options.sources.length ? `the OCI layouts and archives under ${this.options.sources.join(", ")}` : "no OCI layouts (--images)", socket ? `the Docker daemon at ${socket}` : "no Docker daemon"];
    throw new SandboxError(`image ${image} was found in none of: ${where.join("; ")}`);
  }

  private ensure(
    digest: string,
    source: string,
    env: string[],
    note: (line: string) => void,
    unpack: (rootfs: string, onSkip: (name: string, why: string) => void) => Promise<void>,
  ): Promise<ImageDisk> {
    if (!/^[a-f0-9]{64}$/.test(digest)) return Promise.reject(new SandboxError(`image digest ${digest} is not a sha256`));
    const path = join(this.dir, `${digest}.ext4`);
    if (existsSync(path)) {
      return readFile(join(this.dir, `${digest}.json`), "utf8").then((text) => JSON.parse(text) as ImageDisk);
    }
    let pending = this.building.get(digest);
    if (!pending) {
      pending = this.build(digest, path, source, env, note, unpack).finally(() => this.building.delete(digest));
      this.building.set(digest, pending);
    }
    return pending;
  }

  private async build(
    digest: string,
    path: string,
    source: string,
    env: string[],
    note: (line: string) => void,
    unpack: (rootfs: string, onSkip: (name: string, why: string) => void) => Promise<void>,
  ): Promise<ImageDisk> {
    const started = Date.now();
    note(`building the VM disk of image ${digest.slice(0, 12)} from ${source}\n`);
    const temp = join(this.dir, `tmp-${digest.slice(0, 12)}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
    const rootfs = join(temp, "rootfs");
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    try {
      let skipped = 0;
      await unpack(rootfs, () => (skipped += 1));
      const size = await treeSize(rootfs);
      const disk = join(temp, "disk.ext4");
      await makeExt4({
        path: disk,
        sizeBytes: Math.ceil((size.bytes * 1.3 + size.inodes * 4096 + 32 * 1024 * 1024) / 4096) * 4096,
        inodes: Math.ceil(size.inodes * 1.3) + 1024,
        from: rootfs,
        label: "image",
        hostPath: this.options.hostPath,
      });
      const info: ImageDisk = { path, digest, env, source };
      await writeFile(join(temp, "disk.json"), JSON.stringify(info));
      await rename(join(temp, "disk.json"), join(this.dir, `${digest}.json`));
      await rename(disk, path);
      note(`built the VM disk of image ${digest.slice(0, 12)} in ${Date.now() - started} ms${skipped ? ` (${skipped} device nodes or special files left out)` : ""}\n`);
      this.options.logger.info("built a microVM image disk", { digest, source, ms: Date.now() - started });
      return info;
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }
}
