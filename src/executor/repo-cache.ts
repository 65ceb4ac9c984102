/**
 * The executor's repository cache: one bare mirror per repository under `<data>/repo-cache/`,
 * fetched incrementally through the coordinator's git endpoint with the job's token, so a second
 * job on a repository transfers only the objects the mirror lacks.
 *
 * A job never sees the mirror. `provide` fetches the job's commit into it, then hard-links its
 * object files into the job's private git dir (host only, never mounted into a sandbox; git never
 * rewrites an object file in place, it only adds new ones), and the workspace's `.git` is a real
 * copy made from that private dir (see workspace.ts). So nothing a step writes reaches the mirror.
 *
 * State of one mirror (by path), all transitions under its mutex:
 *   ABSENT  --provide-->  FETCHING (init, fetch)  -->  READY (objects linked out, last-used touched)
 *   READY   --provide-->  FETCHING only if the commit is missing  -->  READY
 *   any     --fetch fails and `git fsck` fails, or discard()-->  ABSENT (removed, rebuilt next time)
 *   READY   --evict (total size over the cap, least recently used first, mutex free)-->  ABSENT
 * The mutex serializes everything touching one mirror within this process; eviction skips a
 * mirror whose mutex is held. One executor process owns a data dir (as it owns its workspaces).
 * Jobs already holding links keep working after their mirror is repacked, evicted or rebuilt:
 * their links are their own names for the files.
 */
import { createHash } from "node:crypto";
import { copyFile, link, mkdir, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CommandError, gitEnv, run, type RunResult } from "../common/exec.ts";
import type { Logger } from "../common/logger.ts";

export interface CacheFetch {
  remoteUrl: string;
  /** Environment giving git the job's credentials (GIT_CONFIG_* variables), never written to disk. */
  authEnv: Record<string, string>;
  signal: AbortSignal;
  log: (text: string | Buffer) => void;
}

export interface RepoCacheOptions {
  dir: string;
  /** Mirrors are evicted, least recently used first, while their total exceeds this. */
  maxBytes: number;
  hostPath: string;
  logger: Logger;
}

const MIRROR_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n\tlogAllRefUpdates = false\n[gc]\n\tauto = 0\n[fetch]\n\tunpackLimit = 1\n[transfer]\n\tunpackLimit = 1\n";
/** Written last when a mirror is created: a mirror without it is a half-made one and is rebuilt. */
const READY_FILE = "airlock-mirror";
const MAX_PACKS = 32;
const MAX_REFS = 64;

export class RepoCache {
  private readonly options: RepoCacheOptions;
  private readonly locks = new Map<string, Promise<void>>();
  private readonly held = new Set<string>();

  constructor(options: RepoCacheOptions) {
    this.options = options;
  }

  mirrorPath(repository: string): string {
    return join(this.options.dir, `${createHash("sha256").update(repository).digest("hex").slice(0, 32)}.git`);
  }

  /** Fetches `commit` into the repository's mirror and links the mirror's objects into `objectsDir`. */
  async provide(repository: string, commit: string, objectsDir: string, fetch: CacheFetch): Promise<void> {
    const mirror = this.mirrorPath(repository);
    await this.locked(mirror, async () => {
      await this.ensureCommit(mirror, commit, fetch);
      await linkObjects(join(mirror, "objects"), objectsDir);
      const now = new Date();
      await utimes(join(mirror, READY_FILE), now, now);
    });
    await this.evict(mirror).catch((error: unknown) => this.options.logger.warn("repository cache eviction failed", { error: String(error) }));
  }

  /** Removes a mirror found unusable (a checkout from it failed); the next provide rebuilds it. */
  async discard(repository: string): Promise<void> {
    const mirror = this.mirrorPath(repository);
    await this.locked(mirror, () => rm(mirror, { recursive: true, force: true }));
  }

  private async ensureCommit(mirror: string, commit: string, fetch: CacheFetch): Promise<void> {
    const ready = await stat(join(mirror, READY_FILE)).catch(() => undefined);
    if (!ready) await this.create(mirror);
    // A ref per fetched commit names it without a git process; a checkout from a mirror that lost the
    // objects fails, and the workspace then discards the mirror.
    else if ((await stat(join(mirror, "refs", "airlock", commit)).catch(() => undefined)) || (await this.git(mirror, ["cat-file", "-e", `${commit}^{commit}`], fetch.signal)).code === 0) {
      fetch.log(`repository cache: ${commit} already cached\n`);
      return;
    }
    const fetched = await this.fetch(mirror, commit, fetch);
    if (fetched.code !== 0) {
      const fsck = await this.git(mirror, ["fsck", "--connectivity-only", "--no-dangling", "--no-progress"], fetch.signal);
      if (fsck.code === 0) throw new CommandError("git fetch", fetched);
      fetch.log("repository cache: the mirror is corrupt; rebuilding it\n");
      this.options.logger.warn("repository mirror corrupt; rebuilding", { mirror });
      await this.create(mirror);
      const again = await this.fetch(mirror, commit, fetch);
      if (again.code !== 0) throw new CommandError("git fetch", again);
    }
    await this.tidy(mirror, fetch.signal);
  }

  private async create(mirror: string): Promise<void> {
    await rm(mirror, { recursive: true, force: true });
    await writeGitDir(mirror, MIRROR_CONFIG);
    await writeFile(join(mirror, READY_FILE), "");
  }

  private async fetch(mirror: string, commit: string, fetch: CacheFetch): Promise<RunResult> {
    const args = ["-c", "protocol.version=2", "fetch", "--no-progress", "--no-tags", "--no-recurse-submodules", "--no-write-fetch-head", fetch.remoteUrl, `+${commit}:refs/airlock/${commit}`];
    fetch.log(`repository cache: $ git fetch ${commit}\n`);
    const started = Date.now();
    const result = await run("git", args, { env: gitEnv({ PATH: this.options.hostPath }, { GIT_DIR: mirror, ...fetch.authEnv }), signal: fetch.signal, onOutput: (chunk) => fetch.log(chunk) });
    fetch.log(`  (${Date.now() - started} ms)\n`);
    return result;
  }

  /** Keeps the ref and pack counts bounded: old refs dropped (their objects stay), many packs made one. */
  private async tidy(mirror: string, signal: AbortSignal): Promise<void> {
    const refsDir = join(mirror, "refs", "airlock");
    const refs = await readdir(refsDir).catch(() => [] as string[]);
    if (refs.length > MAX_REFS) {
      const dated = await Promise.all(refs.map(async (name) => ({ name, mtime: (await stat(join(refsDir, name))).mtimeMs })));
      dated.sort((a, b) => b.mtime - a.mtime);
      await Promise.all(dated.slice(MAX_REFS / 2).map(({ name }) => rm(join(refsDir, name), { force: true })));
    }
    const packs = (await readdir(join(mirror, "objects", "pack"))).filter((name) => name.endsWith(".pack"));
    if (packs.length > MAX_PACKS) {
      const repacked = await this.git(mirror, ["repack", "-a", "-d", "-q"], signal);
      if (repacked.code !== 0) throw new CommandError("git repack", repacked);
    }
  }

  private git(mirror: string, args: string[], signal: AbortSignal): Promise<RunResult> {
    return run("git", args, { env: gitEnv({ PATH: this.options.hostPath }, { GIT_DIR: mirror }), signal });
  }

  private async locked<T>(mirror: string, body: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(mirror) ?? Promise.resolve();
    let release = (): void => undefined;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.locks.set(mirror, tail);
    await previous;
    this.held.add(mirror);
    try {
      return await body();
    } finally {
      this.held.delete(mirror);
      release();
      if (this.locks.get(mirror) === tail) this.locks.delete(mirror);
    }
  }

  /** Removes least recently used mirrors, skipping busy ones and `keep` (just used), until the total fits the cap. */
  private async evict(keep: string): Promise<void> {
    const names = (await readdir(this.options.dir).catch(() => [] as string[])).filter((name) => name.endsWith(".git"));
    const mirrors = await Promise.all(
      names.map(async (name) => {
        const path = join(this.options.dir, name);
        const used = await stat(join(path, READY_FILE)).catch(() => undefined);
        return { path, usedMs: used?.mtimeMs ?? 0, bytes: await treeBytes(path) };
      }),
    );
    let total = mirrors.reduce((sum, mirror) => sum + mirror.bytes, 0);
    mirrors.sort((a, b) => a.usedMs - b.usedMs);
    for (const mirror of mirrors) {
      if (total <= this.options.maxBytes) break;
      if (mirror.path === keep || this.locks.has(mirror.path)) continue;
      await this.locked(mirror.path, () => rm(mirror.path, { recursive: true, force: true }));
      this.options.logger.info("repository mirror evicted", { mirror: mirror.path, bytes: mirror.bytes });
      total -= mirror.bytes;
    }
  }
}

/**
 * What `git init --bare` makes, less its sample hooks and description, without a git process
 * (each costs 15-30 ms and blocks the event loop while it forks).
 */
export async function writeGitDir(dir: string, config: string): Promise<void> {
  await mkdir(join(dir, "objects", "pack"), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, "objects", "info"), { recursive: true });
  await mkdir(join(dir, "refs", "heads"), { recursive: true });
  await mkdir(join(dir, "refs", "tags"), { recursive: true });
  await writeFile(join(dir, "HEAD"), "ref: refs/heads/main\n");
  await writeFile(join(dir, "config"), config);
}

/** Hard-links every object file (packs and loose objects) of `from` into `to`; copies across filesystems. */
async function linkObjects(from: string, to: string): Promise<void> {
  const entries = await readdir(from, { withFileTypes: true });
  await mkdir(to, { recursive: true });
  for (const entry of entries) {
    if (entry.name === "info" || entry.name.startsWith("tmp_") || entry.name.endsWith(".keep")) continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) await linkObjects(source, target);
    else if (entry.isFile()) {
      await link(source, target).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code === "EXDEV" || error.code === "EPERM") await copyFile(source, target);
        else if (error.code !== "EEXIST") throw error;
      });
    }
  }
}

async function treeBytes(path: string): Promise<number> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const entry of entries) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) total += await treeBytes(child);
    else if (entry.isFile()) total += (await stat(child).catch(() => undefined))?.size ?? 0;
  }
  return total;
}
