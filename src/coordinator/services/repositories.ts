/**
 * Repository mirrors: `git clone --mirror` of each registered source into the data dir, fetched
 * again when a job names a branch or tag, and resolved to a commit sha at submit time.
 *
 * Concurrency: at most one fetch per repository runs at a time; callers arriving meanwhile share
 * its promise (so a ref may resolve to what the source had a moment before the submit). A mirror missing on this coordinator (another coordinator registered it) is cloned
 * on first use.
 */
import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { Clock } from "../../common/clock.ts";
import { CommandError, gitEnv, run, runChecked } from "../../common/exec.ts";
import type { Logger } from "../../common/logger.ts";
import { NotFoundError, repositorySourceProblem, ValidationError } from "../../protocol/index.ts";
import type { RepositoryRecord, Store } from "../../store/index.ts";

const SHA = /^[0-9a-f]{40}$|^[0-9a-f]{64}$/;

export class Repositories {
  private readonly fetches = new Map<string, Promise<string | undefined>>();
  private readonly fetchListeners: ((name: string) => void)[] = [];
  private readonly options: { store: Store; dataDir: string; hostEnv: Record<string, string | undefined>; clock: Clock; logger: Logger };

  constructor(options: { store: Store; dataDir: string; hostEnv: Record<string, string | undefined>; clock: Clock; logger: Logger }) {
    this.options = options;
  }

  mirrorPath(name: string): string {
    return join(this.options.dataDir, "repos", `${name}.git`);
  }

  private env(): Record<string, string> {
    return gitEnv(this.options.hostEnv);
  }

  /** Registers (or re-points) a repository and mirrors it now, so a bad source fails here. */
  async add(name: string, source: string): Promise<RepositoryRecord> {
    const problem = repositorySourceProblem(source);
    if (problem) throw new ValidationError(`source: ${problem}`, { field: "source" });
    const normalized = isAbsolute(source) || source.startsWith(".") ? resolve(source) : source;
    const target = this.mirrorPath(name);
    const staging = `${target}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(dirname(target), { recursive: true });
    try {
      await runChecked("git", ["clone", "--mirror", "--quiet", "--", normalized, staging], { env: this.env() });
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      const detail = error instanceof CommandError ? error.result.stderr.trim().split("\n").pop() : String(error);
      throw new ValidationError(`cannot mirror ${normalized}: ${detail}`, { field: "source" });
    }
    await rm(target, { recursive: true, force: true });
    await rename(staging, target);
    return this.options.store.repositories.put(name, normalized, this.options.clock.now());
  }

  /** Called after every fetch of a mirror (auto-indexing looks at its HEAD then). */
  onFetched(listener: (name: string) => void): void {
    this.fetchListeners.push(listener);
  }

  /** The default branch's HEAD in the mirror, or null when it has none. */
  async head(name: string): Promise<string | null> {
    const path = this.mirrorPath(name);
    if (!existsSync(path)) return null;
    return (await this.revParse(path, "HEAD")) ?? null;
  }

  /** Fetches the repository's source now; a ValidationError when the fetch fails. Returns HEAD after it. */
  async sync(name: string): Promise<string | null> {
    const record = await this.options.store.repositories.get(name);
    if (!record) throw new NotFoundError(`repository "${name}" is not registered (see \`airlock repo add\`)`);
    const failure = await this.fetch(record);
    if (failure) throw new ValidationError(`cannot fetch ${record.source} for ${name}: ${failure}`, { field: "repository" });
    return this.head(name);
  }

  async list(): Promise<(RepositoryRecord & { headCommit: string | null })[]> {
    const records = await this.options.store.repositories.list();
    return Promise.all(
      records.map(async (record) => {
        const head = existsSync(this.mirrorPath(record.name))
          ? await run("git", ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], { cwd: this.mirrorPath(record.name), env: this.env() })
          : undefined;
        return { ...record, headCommit: head?.code === 0 ? head.stdout.toString().trim() : null };
      }),
    );
  }

  /** The mirror's path, cloning it first when this coordinator has none yet. */
  async ensureMirror(name: string): Promise<string> {
    const path = this.mirrorPath(name);
    if (existsSync(path)) return path;
    const record = await this.options.store.repositories.get(name);
    if (!record) throw new NotFoundError(`repository "${name}" is not registered`);
    await this.fetch(record);
    return path;
  }

  /**
   * The mirror's path, fetched first when it lacks `commit`: with a shared database, the job may
   * have been submitted through another coordinator, whose mirror was fresher than this one.
   */
  async ensureCommit(name: string, commit: string): Promise<string> {
    const cwd = await this.ensureMirror(name);
    if (await this.revParse(cwd, commit)) return cwd;
    const record = await this.options.store.repositories.get(name);
    if (record) await this.fetch(record);
    return cwd;
  }

  /** Resolves a commit-ish to a full sha, fetching from the source when it names a ref. */
  async resolveCommit(name: string, commitish: string): Promise<string> {
    const record = await this.options.store.repositories.get(name);
    if (!record) throw new NotFoundError(`repository "${name}" is not registered (see \`airlock repo add\`)`);
    if (commitish.startsWith("-") || /[\s\0~^:?*[\\]/.test(commitish.replace(/\^\{commit\}$/, ""))) {
      throw new ValidationError(`commit "${commitish}" is not a valid revision`, { field: "commit" });
    }
    const cwd = await this.ensureMirror(name);
    const known = SHA.test(commitish) ? await this.revParse(cwd, commitish) : undefined;
    if (known) return known;
    await this.fetch(record);
    const resolved = await this.revParse(cwd, commitish);
    if (!resolved) throw new ValidationError(`commit "${commitish}" does not exist in repository "${name}"`, { field: "commit" });
    return resolved;
  }

  private async revParse(cwd: string, commitish: string): Promise<string | undefined> {
    const result = await run("git", ["rev-parse", "--verify", "--quiet", "--end-of-options", `${commitish}^{commit}`], { cwd, env: this.env() });
    return result.code === 0 ? result.stdout.toString().trim() : undefined;
  }

  /** Resolves to why the fetch failed, or undefined when it worked. */
  private fetch(record: RepositoryRecord): Promise<string | undefined> {
    // Submits arriving while a fetch runs share it; the next submit fetches again, so a ref
    // always resolves to what the source had when the job was submitted.
    const inFlight = this.fetches.get(record.name);
    if (inFlight) return inFlight;
    const promise = this.doFetch(record).finally(() => {
      this.fetches.delete(record.name);
      for (const listener of this.fetchListeners) listener(record.name);
    });
    this.fetches.set(record.name, promise);
    return promise;
  }

  private async doFetch(record: RepositoryRecord): Promise<string | undefined> {
    const path = this.mirrorPath(record.name);
    if (!existsSync(path)) {
      await mkdir(dirname(path), { recursive: true });
      const staging = `${path}.tmp-${process.pid}-${Date.now()}`;
      await runChecked("git", ["clone", "--mirror", "--quiet", "--", record.source, staging], { env: this.env() });
      await rename(staging, path);
      return undefined;
    }
    const result = await run("git", ["fetch", "--prune", "--quiet", "origin"], { cwd: path, env: this.env() });
    if (result.code === 0) return undefined;
    this.options.logger.warn("mirror fetch failed; using what the mirror has", { repository: record.name, stderr: result.stderr.trim() });
    return result.stderr.trim().split("\n").pop() || `git fetch exited with ${result.code}`;
  }
}
