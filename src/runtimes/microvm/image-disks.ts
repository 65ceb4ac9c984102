/**
 * Step images as read-only ext4 disks, built once per image id (the digest of its config) into
 * <data>/microvm/images/<hex>.ext4 (with <hex>.json: the image's env and where it came from)
 * and shared by every VM. The root filesystem a disk is made from (mkfs.ext4 -d) comes from the
 * shared image store (../images/store.ts), cached beside the disks in rootfs/ and archives/.
 *
 * Concurrency: within a process, one build per id at a time (the `building` map of promises);
 * across processes, each build happens in its own temp dir and lands with rename(2), the .json
 * first and the .ext4 last, so a disk that exists is complete. Two executors building the same
 * image at once waste work, never corrupt it. The rootfs underneath follows the store's rules.
 */
import { existsSync } from "node:fs";
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../common/logger.ts";
import { ImageStore, type ResolvedImage } from "../images/store.ts";
import { makeExt4 } from "./disks.ts";

export interface ImageDisk {
  path: string;
  /** The image id's hex digits. */
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
  readonly store: ImageStore;
  private readonly options: ImageDisksOptions;
  private readonly dir: string;
  private readonly building = new Map<string, Promise<ImageDisk>>();

  constructor(options: ImageDisksOptions) {
    this.options = options;
    this.dir = join(options.dataDir, "microvm", "images");
    this.store = new ImageStore({ cacheDir: this.dir, sources: options.sources, dockerSocket: options.dockerSocket, logger: options.logger });
  }

  /** The disk of `image`, building it when needed. `note` tells the step's log what takes time. */
  async disk(image: string, note: (line: string) => void): Promise<ImageDisk> {
    const resolved = await this.store.resolve(image);
    const digest = resolved.id.replace(/^sha256:/, "");
    const path = join(this.dir, `${digest}.ext4`);
    if (existsSync(path)) return JSON.parse(await readFile(join(this.dir, `${digest}.json`), "utf8")) as ImageDisk;
    let pending = this.building.get(digest);
    if (!pending) {
      pending = this.build(digest, path, resolved, note).finally(() => this.building.delete(digest));
      this.building.set(digest, pending);
    }
    return pending;
  }

  /** Removes half-built unpacks of dead processes. */
  reapTemporary(): Promise<number> {
    return this.store.reapTemporary();
  }

  private async build(digest: string, path: string, image: ResolvedImage, note: (line: string) => void): Promise<ImageDisk> {
    const started = Date.now();
    note(`building the VM disk of image ${digest.slice(0, 12)} from ${image.source}\n`);
    await mkdir(this.dir, { recursive: true });
    const temp = join(this.dir, `tmp-${digest.slice(0, 12)}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`);
    await mkdir(temp, { mode: 0o700 });
    try {
      const size = await treeSize(image.rootfs);
      const disk = join(temp, "disk.ext4");
      await makeExt4({
        path: disk,
        sizeBytes: Math.ceil((size.bytes * 1.3 + size.inodes * 4096 + 32 * 1024 * 1024) / 4096) * 4096,
        inodes: Math.ceil(size.inodes * 1.3) + 1024,
        from: image.rootfs,
        label: "image",
        hostPath: this.options.hostPath,
      });
      const info: ImageDisk = { path, digest, env: image.config.env, source: image.source };
      await writeFile(join(temp, "disk.json"), JSON.stringify(info));
      await rename(join(temp, "disk.json"), join(this.dir, `${digest}.json`));
      await rename(disk, path);
      note(`built the VM disk of image ${digest.slice(0, 12)} in ${Date.now() - started} ms\n`);
      this.options.logger.info("built a microVM image disk", { digest, source: image.source, ms: Date.now() - started });
      return info;
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }
}
