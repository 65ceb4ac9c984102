/**
 * Reading OCI image layouts (a directory with `oci-layout`, `index.json` and `blobs/sha256/`):
 * which images a layout holds and under which names, their manifests, configs and layers.
 * Docker's `docker save` format (a `manifest.json` listing config and layer files) is read here
 * too, since an export from the Docker daemon arrives in it.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename, join, normalize } from "node:path";
import { z } from "zod";
import { SandboxError } from "../../protocol/index.ts";
import { isFullReference, normalizeName } from "./reference.ts";

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
const NAME_ANNOTATION = "io.containerd.image.name";
const REF_ANNOTATION = "org.opencontainers.image.ref.name";
const MAX_JSON_BYTES = 8 * 1024 * 1024;

const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, "not a sha256 digest");
const Descriptor = z.object({
  mediaType: z.string().optional(),
  digest: Digest,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z.object({ architecture: z.string(), os: z.string(), variant: z.string().optional() }).optional(),
});
export type Descriptor = z.infer<typeof Descriptor>;
const Index = z.object({ manifests: z.array(Descriptor) });
const Manifest = z.object({ config: Descriptor, layers: z.array(Descriptor) });
const ImageConfigFile = z.object({
  config: z.object({ Env: z.array(z.string()).nullish(), WorkingDir: z.string().nullish(), User: z.string().nullish() }).nullish(),
});
const DockerSaveManifest = z.array(z.object({ Config: z.string(), RepoTags: z.array(z.string()).nullish(), Layers: z.array(z.string()) }));

/** What a step needs from an image's config. */
export interface ImageConfig {
  env: string[];
}

/** One image a layout holds. */
export interface LayoutImage {
  layout: string;
  /** Normalized names it answers to ("busybox:latest"). */
  names: string[];
  /** The raw ref-name annotation, for `oci:PATH:REF`. */
  refName: string | undefined;
  manifest: Descriptor;
}

const GO_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
export const HOST_PLATFORM = { os: "linux", architecture: GO_ARCH[process.arch] ?? process.arch };

export function blobPath(layout: string, digest: string): string {
  return join(layout, "blobs", ...digest.split(":"));
}

async function readJson<T>(file: string, schema: z.ZodType<T>, what: string, digest?: string): Promise<T> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (error) {
    throw new SandboxError(`cannot read the ${what} at ${file}: ${(error as Error).message}`);
  }
  if (bytes.length > MAX_JSON_BYTES) throw new SandboxError(`the ${what} at ${file} is too large`);
  if (digest && `sha256:${createHash("sha256").update(bytes).digest("hex")}` !== digest) {
    throw new SandboxError(`the ${what} at ${file} does not match its digest ${digest}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new SandboxError(`the ${what} at ${file} is not JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new SandboxError(`the ${what} at ${file} is not valid: ${parsed.error.issues[0]?.message ?? "unknown problem"}`);
  return parsed.data;
}

function platformMatches(descriptor: Descriptor): boolean {
  const platform = descriptor.platform;
  return !platform || (platform.os === HOST_PLATFORM.os && platform.architecture === HOST_PLATFORM.architecture);
}

/** Follows image indexes down to the manifest for this host's platform. */
async function manifestFor(layout: string, descriptor: Descriptor, depth = 0): Promise<Descriptor | undefined> {
  if (!INDEX_TYPES.has(descriptor.mediaType ?? "")) return platformMatches(descriptor) ? descriptor : undefined;
  if (depth > 4) return undefined;
  const index = await readJson(blobPath(layout, descriptor.digest), Index, "image index", descriptor.digest);
  for (const child of index.manifests.filter(platformMatches)) {
    const found = await manifestFor(layout, child, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/**
 * The images in a layout. `label` names the layout for bare-tag references: a layout at
 * /images/alpine whose index says ref.name "3.19" answers to "alpine:3.19".
 */
export async function readLayout(layout: string, label = basename(normalize(layout))): Promise<LayoutImage[]> {
  const index = await readJson(join(layout, "index.json"), Index, "OCI index");
  const images: LayoutImage[] = [];
  for (const descriptor of index.manifests) {
    const manifest = await manifestFor(layout, descriptor);
    if (!manifest) continue;
    const names = new Set<string>();
    const annotations = descriptor.annotations ?? {};
    const refName = annotations[REF_ANNOTATION];
    // A bare tag ("3.19") names the image only with the layout's label ("alpine:3.19"), and only
    // when no full name is annotated.
    const fullName = annotations[NAME_ANNOTATION];
    const candidates = [fullName, refName && (isFullReference(refName) ? refName : fullName ? undefined : `${label}:${refName}`)];
    for (const candidate of candidates) {
      const normalized = candidate ? normalizeName(candidate) : undefined;
      if (normalized && !normalized.digest) names.add(normalized.name);
    }
    images.push({ layout, names: [...names], refName, manifest });
  }
  return images;
}

export async function readManifest(layout: string, descriptor: Descriptor): Promise<{ config: Descriptor; layers: Descriptor[] }> {
  return readJson(blobPath(layout, descriptor.digest), Manifest, "image manifest", descriptor.digest);
}

export async function readImageConfig(file: string, digest?: string): Promise<ImageConfig> {
  const config = await readJson(file, ImageConfigFile, "image config", digest);
  return { env: config.config?.Env ?? [] };
}

/** The layer files, in order, and config of a `docker save` export extracted into `dir`. */
export async function readDockerSave(dir: string): Promise<{ configFile: string; layerFiles: string[] }> {
  const manifest = await readJson(join(dir, "manifest.json"), DockerSaveManifest, "docker export manifest");
  const first = manifest[0];
  if (!first) throw new SandboxError("the Docker daemon exported no image");
  const inside = (path: string): string => {
    const joined = normalize(join(dir, path));
    if (!joined.startsWith(`${dir}/`)) throw new SandboxError(`the Docker export names a file outside itself: ${path}`);
    return joined;
  };
  return { configFile: inside(first.Config), layerFiles: first.Layers.map(inside) };
}
