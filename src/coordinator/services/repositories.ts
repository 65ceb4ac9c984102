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
  private readonly fetches = new Map<string, Promise<void>>();
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

  private fetch(record: RepositoryRecord): Promise<void> {
    // Submits arriving while a fetch runs share it; the next submit fetches again, so a ref
    // always resolves to what the source had when the job was submitted.
    const inFlight = this.fetches.get(record.name);
    if (inFlight) return inFlight;
    const promise = this.doFetch(record).finally(() => {
      this.fetches.delete(record.name);
    });
    this.fetches.set(record.name, promise);
    return promise;
  }

  private async doFetch(record: RepositoryRecord): Promise<void> {
    const path = this.mirrorPath(record.name);
    if (!existsSync(path)) {
      await mkdir(dirname(path), { recursive: true });
      const staging = `${path}.tmp-${process.pid}-${Date.now()}`;
      await runChecked("git", ["clone", "--mirror", "--quiet", "--", record.source, staging], { env: this.env() });
      await rename(staging, path);
      return;
    }
    const result = await run("git", ["fetch", "--prune", "--quiet", "origin"], { cwd: path, env: this.env() });
    if (result.code !== 0) this.options.logger.warn("mirror fetch failed; using what the mirror has", { repository: record.name, stderr: result.stderr.trim() });
  }
}
