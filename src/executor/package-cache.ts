/**
 * The executor's npm package cache (docs/indexing.md): npm tarballs by SHA-512, lent to steps
 * that ask for it (`cache: npm`) and refilled from what they download.
 *
 * What it trusts: nothing a job says, only arithmetic. It holds files named by a SHA-512 digest
 * (npm's cacache layout, `content-v2/sha512/ab/cd/<rest of the hex>`) whose bytes hash to that
 * name: the executor hashes every file a step left before keeping it, and refuses the rest. It
 * keeps no index entries (cacache's `index-v5`: the mapping from URLs and package names to
 * digests, and cached registry metadata), so each job resolves names and versions from the
 * registry or its lockfile itself; the cache can only answer "the bytes whose SHA-512 is X",
 * which are the bytes the registry would send for X. npm checks the digest again when it reads.
 *
 * Lending copies the files into the step's own cache directory in the workspace, so the step can
 * write there (npm does) without touching this cache or another job's copy; the directory is
 * removed when the step ends. Harvesting runs after the step's processes are all gone, so nothing
 * in the sandbox changes the files while they are hashed; it follows no symlinks and takes only
 * regular files.
 *
 * Concurrency: jobs lend and harvest at once. A file enters by a write to a temporary name and a
 * rename, so readers see it whole or not at all; two jobs keeping the same digest write the same
 * bytes. Eviction (oldest first, past `maxBytes`) may remove a file a lend is copying: the lend
 * skips it, and npm downloads it again.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { copyFile, lstat, mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join, posix, relative, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Logger } from "../common/logger.ts";
import { formatSize } from "../protocol/index.ts";
import { SANDBOX_WORKSPACE } from "../runtimes/index.ts";

/** Where npm's content-addressed store lives inside a cache directory (npm's `cache` + `_cacache`). */
export const NPM_CONTENT = join("_cacache", "content-v2", "sha512");
/** A tarball larger than this is not kept. */
const MAX_FILE_BYTES = 512 * 1024 * 1024;
const HEX = /^[0-9a-f]+$/;

export interface PackageCacheOptions {
  dir: string;
  maxBytes: number;
  logger: Logger;
}

export interface HarvestResult {
  kept: number;
  /** Files whose bytes do not hash to their name, that are not regular files, or too large. */
  refused: number;
  bytes: number;
}

/** Every regular file below `dir`, as [path, size]; symlinks and other kinds are counted apart. */
async function walk(dir: string): Promise<{ files: [string, number][]; others: number }> {
  const files: [string, number][] = [];
  let others = 0;
  const visit = async (path: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) await visit(child);
      else if (entry.isFile()) files.push([child, (await lstat(child)).size]);
      else others += 1;
    }
  };
  await visit(dir);
  return { files, others };
}

async function sha512(path: string): Promise<string> {
  const hash = createHash("sha512");
  await pipeline(createReadStream(path), hash);
  return hash.digest("hex");
}

export class PackageCache {
  private readonly options: PackageCacheOptions;
  private readonly content: string;

  constructor(options: PackageCacheOptions) {
    this.options = options;
    this.content = join(options.dir, "npm", "content-v2", "sha512");
  }

  /** Copies every kept tarball into `cacheDir` (the step's npm cache directory). */
  async lend(cacheDir: string): Promise<{ files: number; bytes: number }> {
    const target = join(cacheDir, NPM_CONTENT);
    const { files } = await walk(this.content);
    let copied = 0;
    let bytes = 0;
    for (const [path, size] of files) {
      const to = join(target, relative(this.content, path));
      await mkdir(join(to, ".."), { recursive: true });
      try {
        await copyFile(path, to);
        // Recently lent files are evicted last.
        const now = new Date();
        await utimes(path, now, now).catch(() => undefined);
        copied += 1;
        bytes += size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
    }
    return { files: copied, bytes };
  }

  /** Keeps the tarballs a step added to `cacheDir` whose SHA-512 is their name. */
  async harvest(cacheDir: string): Promise<HarvestResult> {
    const source = join(cacheDir, NPM_CONTENT);
    const { files, others } = await walk(source);
    const result: HarvestResult = { kept: 0, refused: others, bytes: 0 };
    for (const [path, size] of files) {
      const name = relative(source, path).split(sep);
      const hex = name.join("");
      const wellFormed = name.length === 3 && name[0]!.length === 2 && name[1]!.length === 2 && hex.length === 128 && HEX.test(hex);
      const kept = join(this.content, ...name);
      if (wellFormed && (await stat(kept).catch(() => undefined))) continue;
      if (!wellFormed || size > MAX_FILE_BYTES || (await sha512(path)) !== hex) {
        result.refused += 1;
        this.options.logger.warn("package cache: refused a file whose bytes are not its name", { file: name.join("/"), size });
        continue;
      }
      await mkdir(join(kept, ".."), { recursive: true });
      const temporary = `${kept}.tmp-${randomBytes(6).toString("hex")}`;
      await copyFile(path, temporary);
      await rename(temporary, kept);
      result.kept += 1;
      result.bytes += size;
    }
    if (result.kept > 0) await this.evict();
    return result;
  }

  /** Removes the least recently used files until the cache is within its size. */
  private async evict(): Promise<void> {
    const { files } = await walk(this.content);
    let total = files.reduce((sum, [, size]) => sum + size, 0);
    if (total <= this.options.maxBytes) return;
    const aged = await Promise.all(files.map(async ([path, size]) => ({ path, size, used: (await stat(path).catch(() => undefined))?.mtimeMs ?? 0 })));
    aged.sort((a, b) => a.used - b.used);
    for (const file of aged) {
      if (total <= this.options.maxBytes) break;
      await rm(file.path, { force: true });
      total -= file.size;
    }
  }
}

/** The step's own npm cache directory, at the workspace's top (removed when the step ends). */
export const LENT_DIR = ".airlock-cache";

export interface LentCache {
  /** `npm_config_cache` pointing npm at the lent copy. */
  env: Record<string, string>;
  /** Keeps what the step added (when it succeeded) and removes the copy. */
  end(succeeded: boolean): Promise<void>;
}

/** Lends the cache to one step of a job whose workspace is `workspace` (a host path). */
export async function lendPackageCache(cache: PackageCache, workspace: string, hostPaths: boolean, log: { write(text: string): void }): Promise<LentCache> {
  const top = join(workspace, LENT_DIR);
  // Whatever the checkout or an earlier step put there (a symlink, say) goes first.
  await rm(top, { recursive: true, force: true });
  const dir = join(top, "npm");
  await mkdir(dir, { recursive: true });
  const lent = await cache.lend(dir);
  log.write(`[airlock] npm cache: ${lent.files} verified tarball(s) lent (${formatSize(lent.bytes)})\n`);
  return {
    env: { npm_config_cache: hostPaths ? dir : posix.join(SANDBOX_WORKSPACE, LENT_DIR, "npm") },
    async end(succeeded) {
      try {
        if (succeeded) {
          const kept = await cache.harvest(dir);
          log.write(`[airlock] npm cache: kept ${kept.kept} new tarball(s) (${formatSize(kept.bytes)})${kept.refused > 0 ? `, refused ${kept.refused} whose bytes do not match their name` : ""}\n`);
        }
      } finally {
        await rm(top, { recursive: true, force: true });
      }
    },
  };
}
