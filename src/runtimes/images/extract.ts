/**
 * Extracting tar streams into a directory the way a container runtime applies image layers:
 * every path is resolved inside the target as if the target were `/` (a symlink in the tree,
 * absolute or relative, never leads a write outside it), symlink targets are stored verbatim,
 * and OCI whiteouts (`.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` empties its
 * directory of lower-layer content) are applied when `layer` is set.
 * Entries are applied one at a time, in archive order (tar-stream hands over the next entry only
 * when the previous one is done). Device nodes and FIFOs are skipped: every sandbox provides /dev.
 * Set-uid and set-gid bits are dropped, and so are extended attributes (file capabilities).
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, readlink, rm, symlink, utimes } from "node:fs/promises";
import { basename, dirname, join, posix } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createZstdDecompress } from "node:zlib";
import tarStream, { type Header } from "tar-stream";
import { SandboxError } from "../../protocol/index.ts";

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
const MAX_SYMLINK_HOPS = 40;

export interface ExtractOptions {
  /** Apply OCI whiteouts (image layers); off for plain archives. */
  layer: boolean;
  /** Set owners from the archive (only root can). */
  preserveOwner: boolean;
  /** "sha256:..." the compressed stream must hash to. */
  digest?: string | undefined;
  signal?: AbortSignal | undefined;
}

/** Resolves `rel` under `root` as if `root` were `/`: symlinks are followed inside root only. */
export async function resolveInRoot(root: string, rel: string, followLast = true): Promise<string> {
  const pending = rel.split("/").filter((part) => part && part !== ".");
  let resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const candidate = [...resolved, part];
    if (!followLast && pending.length === 0) {
      resolved = candidate;
      break;
    }
    const info = await lstat(join(root, ...candidate)).catch(() => undefined);
    if (!info?.isSymbolicLink()) {
      resolved = candidate;
      continue;
    }
    hops += 1;
    if (hops > MAX_SYMLINK_HOPS) throw new SandboxError(`too many symbolic links resolving /${rel} in the image`);
    const target = await readlink(join(root, ...candidate));
    if (target.startsWith("/")) resolved = [];
    pending.unshift(...target.split("/").filter((piece) => piece && piece !== "."));
  }
  return join(root, ...resolved);
}

/** Picks the decompressor from the stream's first bytes (gzip, zstd, or none). */
async function decompressorFor(file: string): Promise<Transform | undefined> {
  const handle = await open(file, "r");
  try {
    const head = Buffer.alloc(4);
    await handle.read(head, 0, 4, 0);
    if (head[0] === 0x1f && head[1] === 0x8b) return createGunzip();
    if (head.readUInt32LE(0) === 0xfd2fb528) return createZstdDecompress();
    return undefined;
  } finally {
    await handle.close();
  }
}

function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/** Extracts the (possibly compressed) tar file `file` into `root`. */
export async function extractTarFile(file: string, root: string, options: ExtractOptions): Promise<void> {
  const hash = options.digest ? createHash("sha256") : undefined;
  const stages: (Readable | Transform)[] = [createReadStream(file)];
  if (hash) stages.push(hashing(hash));
  const decompress = await decompressorFor(file);
  if (decompress) stages.push(decompress);
  await extractTarStream(stages, root, options);
  if (hash && `sha256:${hash.digest("hex")}` !== options.digest) {
    throw new SandboxError(`${file} does not match its digest ${options.digest}: the image is corrupt`);
  }
}

/** Extracts the tar that `stages` (a source and transforms) produce into `root`. */
export async function extractTarStream(stages: (Readable | Transform)[], root: string, options: ExtractOptions): Promise<void> {
  const extract = tarStream.extract();
  const run = pipeline as unknown as (...args: unknown[]) => Promise<void>;
  const feeding = run(...stages, extract, options.signal ? { signal: options.signal } : {});
  feeding.catch(() => undefined);
  const layer = new LayerWriter(root, options);
  try {
    for await (const entry of extract) {
      await layer.apply(entry);
      entry.resume();
    }
  } catch (error) {
    extract.destroy();
    await feeding.catch(() => undefined);
    throw error;
  }
  await feeding;
}

async function writeContent(target: string, content: AsyncIterable<unknown>): Promise<void> {
  // "wx": never through a symlink or over anything (the caller removed what was there).
  const handle = await open(target, "wx", 0o600);
  try {
    for await (const chunk of content) await handle.write(chunk as Uint8Array);
  } finally {
    await handle.close();
  }
}

class LayerWriter {
  private readonly root: string;
  private readonly options: ExtractOptions;
  /** Paths this layer wrote, and their ancestors: an opaque directory keeps them. */
  private readonly written = new Set<string>();
  private readonly ancestors = new Set<string>();

  constructor(root: string, options: ExtractOptions) {
    this.root = root;
    this.options = options;
  }

  async apply(entry: { header: Header } & AsyncIterable<unknown>): Promise<void> {
    const { header } = entry;
    const rel = posix.normalize(`/${header.name}`).slice(1).replace(/\/$/, "");
    if (rel === "" || rel === ".") {
      if (header.type === "directory" && header.mode !== undefined) await chmod(this.root, header.mode & 0o7777);
      return;
    }
    const name = basename(rel);
    const parent = await resolveInRoot(this.root, dirname(rel));
    if (this.options.layer && name.startsWith(WHITEOUT)) {
      if (name === OPAQUE) await this.opaque(parent);
      else if (!name.startsWith(`${WHITEOUT}${WHITEOUT}`)) await rm(join(parent, name.slice(WHITEOUT.length)), { recursive: true, force: true });
      return;
    }
    await mkdir(parent, { recursive: true, mode: 0o755 });
    const target = join(parent, name);
    const existing = await lstat(target).catch(() => undefined);
    // No set-id bits: they do nothing in a sandbox (no_new_privs), and on the host a set-uid-root
    // binary from an image would be a way up for any local user who could reach the cache.
    const mode = (header.mode ?? 0o644) & 0o1777;
    switch (header.type) {
      case "directory":
        if (existing && !existing.isDirectory()) await rm(target, { recursive: true, force: true });
        if (!existing?.isDirectory()) await mkdir(target, { mode: 0o700 });
        break;
      case "file":
      case "contiguous-file":
        if (existing) await rm(target, { recursive: true, force: true });
        await writeContent(target, entry);
        break;
      case "symlink":
        if (existing) await rm(target, { recursive: true, force: true });
        await symlink(header.linkname ?? "", target);
        break;
      case "link": {
        const source = await resolveInRoot(this.root, header.linkname ?? "", false);
        if (existing) await rm(target, { recursive: true, force: true });
        await link(source, target);
        break;
      }
      default:
        return; // devices, FIFOs: the sandbox provides /dev, the rest has no use in a root filesystem
    }
    this.remember(target);
    await this.setAttributes(target, header, mode);
  }

  private async setAttributes(target: string, header: Header, mode: number): Promise<void> {
    if (header.type === "link") return;
    if (this.options.preserveOwner) await lchown(target, header.uid ?? 0, header.gid ?? 0);
    const mtime = header.mtime ?? new Date(0);
    if (header.type === "symlink") {
      await lutimes(target, mtime, mtime);
      return;
    }
    // After chown, which clears set-id bits. Without root, directories stay writable to us.
    await chmod(target, header.type === "directory" && !this.options.preserveOwner ? mode | 0o700 : mode);
    if (header.type !== "directory") await utimes(target, mtime, mtime);
  }

  private remember(target: string): void {
    this.written.add(target);
    for (let dir = dirname(target); dir.length > this.root.length; dir = dirname(dir)) {
      if (this.ancestors.has(dir)) break;
      this.ancestors.add(dir);
    }
  }

  /** Removes what lower layers put in `dir`, keeping what this layer wrote there. */
  private async opaque(dir: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const child of names) {
      const path = join(dir, child);
      const keep = this.written.has(path) || this.ancestors.has(path);
      // A directory this layer (re)wrote still loses what lower layers put inside it.
      if (keep && (await lstat(path)).isDirectory()) await this.opaque(path);
      else if (!keep) await rm(path, { recursive: true, force: true });
    }
  }
}
