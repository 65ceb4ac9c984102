/**
 * OCI image layouts (a directory with `oci-layout`, `index.json` and `blobs/`) and OCI archives
 * (a tar of one), found under the paths the executor was given (`--images`): layouts are looked
 * for a few levels deep; archives are unpacked once into the cache and read as layouts.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, readdir, readFile, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { SandboxError } from "../../../protocol/index.ts";
import { extractTar } from "../untar.ts";
import { nameMatches, type ImageName } from "./reference.ts";

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  annotations?: Record<string, string>;
}

export interface OciImage {
  layout: string;
  manifestDigest: string;
  layers: Descriptor[];
  env: string[];
  names: string[];
}

const SEARCH_DEPTH = 3;

function blobPath(layout: string, digest: string): string {
  const [algorithm, hex] = digest.split(":");
  if (!algorithm || !hex || !/^[a-z0-9]+$/.test(algorithm) || !/^[a-f0-9]+$/.test(hex)) throw new SandboxError(`bad digest ${digest} in the OCI layout ${layout}`);
  return join(layout, "blobs", algorithm, hex);
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, "utf8")) as T;
}

async function findLayouts(path: string, depth: number, archives: string[]): Promise<string[]> {
  const info = await stat(path).catch(() => undefined);
  if (!info) return [];
  if (info.isFile()) {
    if (path.endsWith(".tar")) archives.push(path);
    return [];
  }
  if (!info.isDirectory()) return [];
  if (existsSync(join(path, "oci-layout"))) return [path];
  if (depth === 0) return [];
  const found: string[] = [];
  for (const entry of await readdir(path).catch(() => [] as string[])) {
    if (entry.startsWith(".") || entry === "blobs") continue;
    found.push(...(await findLayouts(join(path, entry), depth - 1, archives)));
  }
  return found;
}

async function unpackArchive(archive: string, cacheDir: string): Promise<string> {
  const real = await realpath(archive);
  const info = await stat(real);
  const key = createHash("sha256").update(`${real}\0${info.size}\0${info.mtimeMs}`).digest("hex").slice(0, 32);
  const dir = join(cacheDir, key);
  if (existsSync(join(dir, "oci-layout"))) return dir;
  const temp = `${dir}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`;
  await mkdir(temp, { recursive: true });
  try {
    await extractTar(createReadStream(real), temp, { whiteouts: false, preserveOwners: false });
    await rename(temp, dir).catch(async () => rm(temp, { recursive: true, force: true }));
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
  return dir;
}

async function imagesOf(layout: string): Promise<OciImage[]> {
  const index = await readJson<{ manifests?: Descriptor[] }>(join(layout, "index.json")).catch(() => ({ manifests: [] as Descriptor[] }));
  const images: OciImage[] = [];
  for (const descriptor of index.manifests ?? []) {
    const annotations = descriptor.annotations ?? {};
    const names = [annotations["io.containerd.image.name"], annotations["org.opencontainers.image.ref.name"]].filter((name): name is string => !!name);
    let manifest: { config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[] };
    try {
      manifest = await readJson(blobPath(layout, descriptor.digest));
    } catch {
      continue;
    }
    if (!manifest.config || !manifest.layers) continue;
    const config = await readJson<{ config?: { Env?: string[] } }>(blobPath(layout, manifest.config.digest)).catch(() => ({ config: undefined }));
    images.push({ layout, manifestDigest: descriptor.digest, layers: manifest.layers, env: config.config?.Env ?? [], names });
  }
  return images;
}

/** The image `wanted` names, from the layouts and archives under `sources`; undefined when none has it. */
export async function findOciImage(wanted: ImageName, sources: readonly string[], archiveCache: string): Promise<OciImage | undefined> {
  for (const source of sources) {
    const archives: string[] = [];
    const layouts = await findLayouts(source, SEARCH_DEPTH, archives);
    for (const archive of archives) layouts.push(await unpackArchive(archive, archiveCache));
    for (const layout of layouts) {
      for (const image of await imagesOf(layout)) {
        if (wanted.digest && image.manifestDigest !== wanted.digest) continue;
        if (image.names.some((name) => nameMatches(wanted, name)) || (wanted.digest && image.manifestDigest === wanted.digest)) return image;
        // A layout whose only name is a tag: it answers to its directory's name.
        const bare = image.names.find((name) => !name.includes("/") && !name.includes(":"));
        if (bare && nameMatches(wanted, `${basename(layout)}:${bare}`)) return image;
      }
    }
  }
  return undefined;
}

function layerStream(layout: string, layer: Descriptor): Readable {
  const raw = createReadStream(blobPath(layout, layer.digest));
  const type = layer.mediaType ?? "";
  if (type.endsWith("+gzip") || type.endsWith(".gzip") || type.endsWith("tar.gzip")) return raw.pipe(createGunzip());
  if (type.endsWith("+zstd")) return raw.pipe(createZstdDecompress());
  return raw;
}

/** Unpacks the image's layers, in order, into `rootfs`. */
export async function unpackOciImage(image: OciImage, rootfs: string, onSkip: (name: string, why: string) => void): Promise<void> {
  for (const layer of image.layers) {
    if (/nondistributable|foreign/.test(layer.mediaType ?? "") && !existsSync(blobPath(image.layout, layer.digest))) continue;
    await extractTar(layerStream(image.layout, layer), rootfs, { whiteouts: true, preserveOwners: true, onSkip });
  }
}
