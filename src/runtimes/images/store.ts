/**
 * Turns a step's `image` into a root filesystem on the host, without any daemon: from the OCI
 * layouts and archives the operator offers (`--images`, or an explicit `oci:`/`oci-archive:`
 * reference inside them), else from a local Docker daemon when one answers (exported once).
 * Each image is unpacked once per config digest (the image id) into
 * `<cache>/rootfs/<hex>/{rootfs,config.json}` and reused by every later step and job. Runtimes
 * share it: bwrap runs steps on that rootfs, microvm makes its ext4 disk from it.
 *
 * Concurrency: the unpacked trees and extracted archives are BuildOnceDirs (cache.ts): a tree
 * appears whole by rename(2) or not at all; concurrent resolves of one image in a process share
 * one unpack; two processes may both unpack and the first rename wins. `configs` and
 * `manifestIds` only memoize what a published tree already holds, so they need no lock.
 */
import { existsSync } from "node:fs";
import { lstat, mkdir, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { join, sep } from "node:path";
import type { Logger } from "../../common/logger.ts";
import { SandboxError, ValidationError } from "../../protocol/index.ts";
import { BuildOnceDirs } from "./cache.ts";
import { archiveLabel, ImageCatalog } from "./catalog.ts";
import { DockerImageSource, DockerUnavailableError } from "./docker.ts";
import { extractTarFile, extractTarStream, resolveInRoot } from "./extract.ts";
import { blobPath, readDockerSave, readImageConfig, readLayout, readManifest, type ImageConfig, type LayoutImage } from "./layout.ts";
import { parseImageReference } from "./reference.ts";

export interface ResolvedImage {
  rootfs: string;
  config: ImageConfig;
  /** "sha256:<hex>" of the image config. */
  id: string;
  /** Where it came from, for logs. */
  source: string;
  /** True when this call unpacked it. */
  unpacked: boolean;
}

export interface ImageStoreOptions {
  /** The runtime's cache dir (under the executor's data dir). */
  cacheDir: string;
  /** OCI layouts, OCI archives, or directories holding layouts. */
  sources: readonly string[];
  /** A Docker daemon to export images from when no OCI source has them; none when undefined. */
  dockerSocket?: string | undefined;
  /** Directories the runtime mounts over in every rootfs, made before the tree is published. */
  mountPoints?: readonly string[] | undefined;
  logger: Logger;
}

/** An image the step named that no source has: the job's fault, reported in its log. */
export class ImageNotFoundError extends ValidationError {}

export class ImageStore {
  readonly catalog: ImageCatalog;
  readonly docker: DockerImageSource | undefined;
  private readonly roots: BuildOnceDirs;
  private readonly archives: BuildOnceDirs;
  private readonly sources: readonly string[];
  private readonly logger: Logger;
  private readonly mountPoints: readonly string[];
  private readonly preserveOwner = process.getuid?.() === 0;
  private readonly configs = new Map<string, ImageConfig>();
  /** layout + manifest digest -> image id, so a known image costs no manifest read. */
  private readonly manifestIds = new Map<string, string>();

  constructor(options: ImageStoreOptions) {
    this.sources = options.sources;
    this.logger = options.logger;
    this.roots = new BuildOnceDirs(join(options.cacheDir, "rootfs"));
    this.archives = new BuildOnceDirs(join(options.cacheDir, "archives"));
    this.catalog = new ImageCatalog({ sources: options.sources, archives: this.archives, logger: options.logger });
    this.mountPoints = options.mountPoints ?? [];
    this.docker = options.dockerSocket === undefined ? undefined : new DockerImageSource(options.dockerSocket);
  }

  async resolve(reference: string, signal?: AbortSignal): Promise<ResolvedImage> {
    const parsed = parseImageReference(reference);
    if (parsed.kind !== "name") {
      const path = await this.offered(parsed.path, reference);
      const layout = parsed.kind === "oci" ? path : await this.catalog.archiveLayout(path);
      const label = parsed.kind === "oci" ? undefined : archiveLabel(path);
      const image = this.pick(await readLayout(layout, label), parsed.ref, reference);
      return this.fromLayout(image, `${parsed.kind} ${path}`, signal);
    }
    // A digest names one manifest whatever the name says.
    const found = await this.catalog.find(parsed.digest ? undefined : parsed.name, parsed.digest);
    if (found) return this.fromLayout(found, `OCI layout ${found.layout}`, signal);
    return this.fromDocker(parsed.digest ? `${parsed.name}@${parsed.digest}` : parsed.name, reference, signal);
  }

  /** Removes half-built unpacks of dead processes. */
  async reapTemporary(): Promise<number> {
    return (await this.roots.reapTemporary()) + (await this.archives.reapTemporary());
  }

  async close(): Promise<void> {
    await this.docker?.close();
  }

  /** Explicit paths must lie inside what the operator offered: a job may not read arbitrary host dirs. */
  private async offered(path: string, reference: string): Promise<string> {
    const real = await realpath(path).catch(() => undefined);
    if (!real) throw new ImageNotFoundError(`image "${reference}": ${path} does not exist`);
    for (const source of this.sources) {
      const root = await realpath(source).catch(() => undefined);
      if (root && (real === root || real.startsWith(root.endsWith(sep) ? root : root + sep))) return real;
    }
    throw new ImageNotFoundError(`image "${reference}": ${path} is not inside the image sources this executor offers (--images: ${this.sources.join(", ") || "none"})`);
  }

  private pick(images: LayoutImage[], ref: string | undefined, reference: string): LayoutImage {
    if (ref === undefined) {
      if (images.length === 1 && images[0]) return images[0];
      throw new ImageNotFoundError(`image "${reference}": the layout holds ${images.length} images for this platform; name one with :REF`);
    }
    const match = images.find((image) => image.refName === ref || image.names.some((name) => name === ref || name === `${ref}:latest`));
    if (!match) throw new ImageNotFoundError(`image "${reference}": no image with ref "${ref}" in the layout`);
    return match;
  }

  private async fromLayout(image: LayoutImage, source: string, signal?: AbortSignal): Promise<ResolvedImage> {
    const known = this.manifestIds.get(`${image.layout}\0${image.manifest.digest}`);
    // The common case, every step after an image's first: no manifest read, one stat, no thread-pool hop.
    if (known && existsSync(this.roots.pathOf(this.key(known)))) {
      return { rootfs: join(this.roots.pathOf(this.key(known)), "rootfs"), config: await this.config(known), id: known, source, unpacked: false };
    }
    const manifest = await readManifest(image.layout, image.manifest);
    const id = manifest.config.digest;
    const unpacked = await this.roots.ensure(this.key(id), async (temp) => {
      this.logger.info("unpacking image", { source, id, layers: manifest.layers.length });
      const rootfs = join(temp, "rootfs");
      await mkdir(rootfs, { mode: 0o755 });
      for (const layer of manifest.layers) {
        await extractTarFile(blobPath(image.layout, layer.digest), rootfs, { layer: true, preserveOwner: this.preserveOwner, digest: layer.digest, signal });
      }
      await this.finish(temp, await readImageConfig(blobPath(image.layout, id), id));
    });
    this.manifestIds.set(`${image.layout}\0${image.manifest.digest}`, id);
    return { rootfs: join(this.roots.pathOf(this.key(id)), "rootfs"), config: await this.config(id), id, source, unpacked };
  }

  private async fromDocker(name: string, reference: string, signal?: AbortSignal): Promise<ResolvedImage> {
    const docker = this.docker;
    if (!docker) throw new ImageNotFoundError(`image "${reference}" not found: it is not among the OCI images this executor offers (${await this.catalog.describe()}), and no Docker daemon is configured`);
    let found: Awaited<ReturnType<DockerImageSource["inspect"]>>;
    try {
      found = await docker.inspect(name, signal);
    } catch (error) {
      if (!(error instanceof DockerUnavailableError)) throw error;
      throw new ImageNotFoundError(`image "${reference}" not found: it is not among the OCI images this executor offers (${await this.catalog.describe()}), and ${error.message}`);
    }
    if (!found) throw new ImageNotFoundError(`image "${reference}" not found: it is not among the OCI images this executor offers (${await this.catalog.describe()}), nor in the Docker daemon at ${docker.socketPath}`);
    const id = found.id;
    const unpacked = await this.roots.ensure(this.key(id), async (temp) => {
      this.logger.info("exporting image from Docker", { name, id });
      const exported = join(temp, "export");
      await mkdir(exported, { mode: 0o700 });
      await extractTarStream([await docker.export(name, signal)], exported, { layer: false, preserveOwner: false, signal });
      const { configFile, layerFiles } = await readDockerSave(exported);
      const rootfs = join(temp, "rootfs");
      await mkdir(rootfs, { mode: 0o755 });
      for (const file of layerFiles) await extractTarFile(file, rootfs, { layer: true, preserveOwner: this.preserveOwner, signal });
      const config = await readImageConfig(configFile, id);
      await rm(exported, { recursive: true, force: true });
      await this.finish(temp, config);
    });
    return { rootfs: join(this.roots.pathOf(this.key(id)), "rootfs"), config: await this.config(id), id, source: `Docker daemon at ${docker.socketPath}`, unpacked };
  }

  private key(id: string): string {
    return id.replace(/^sha256:/, "");
  }

  /** Creates the runtime's mount points and records the config, before the tree is published. */
  private async finish(temp: string, config: ImageConfig): Promise<void> {
    const rootfs = join(temp, "rootfs");
    for (const point of this.mountPoints) {
      const path = await resolveInRoot(rootfs, point, false);
      const info = await lstat(path).catch(() => undefined);
      if (!info) await mkdir(path, { mode: 0o755 });
      else if (!info.isDirectory() && !info.isSymbolicLink()) throw new SandboxError(`the image has a file at /${point}, where the sandbox mounts a directory`);
    }
    await writeFile(join(temp, "config.json"), JSON.stringify(config));
  }

  private async config(id: string): Promise<ImageConfig> {
    const known = this.configs.get(id);
    if (known) return known;
    const config = JSON.parse(await readFile(join(this.roots.pathOf(this.key(id)), "config.json"), "utf8")) as ImageConfig;
    this.configs.set(id, config);
    return config;
  }
}
