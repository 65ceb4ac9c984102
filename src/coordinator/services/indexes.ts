/**
 * Code indexes (docs/indexing.md): inferring the indexing jobs of a repository at a commit from
 * its files in the mirror, queueing them (one job and one pending index per project root, unless
 * an index of that key is pending or completed already), and the indexes themselves.
 *
 * Plans of one repository run one at a time in this process (`locks`), so two requests for the
 * same commit (a user's and auto-indexing's) do not both find no index and queue two jobs.
 *
 * A pending index follows its job: whenever it is read (`sync`), an index whose job ended is
 * completed (its artifact parsed and counted) or failed (the job's state and message). Reads may
 * race on one index; the store ends it once (a ConflictError for the loser, who reads it again).
 */
import { gitEnv, run } from "../../common/exec.ts";
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { countScip, inferIndexPlans, readScip, type SourceTree } from "../../indexing/index.ts";
import { ConflictError, IndexRequest, isTerminal, NotFoundError, validationErrorFrom, ValidationError, type IndexPlanEntry, type IndexPlanResponse, type IndexView } from "../../protocol/index.ts";
import type { ArtifactRecord, IndexRecord, Store } from "../../store/index.ts";
import type { Repositories } from "./repositories.ts";

export function indexView(record: IndexRecord): IndexView {
  return {
    id: record.id,
    repository: record.repository,
    commit: record.commit,
    root: record.root,
    indexer: record.indexer,
    indexerVersion: record.indexerVersion,
    jobId: record.jobId,
    state: record.state,
    documents: record.counts?.documents ?? null,
    symbols: record.counts?.symbols ?? null,
    occurrences: record.counts?.occurrences ?? null,
    size: record.counts?.size ?? null,
    failureMessage: record.failureMessage,
    createdAt: new Date(record.createdAt).toISOString(),
    updatedAt: new Date(record.updatedAt).toISOString(),
  };
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

export interface IndexServiceOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  repositories: Repositories;
  hostEnv: Readonly<Record<string, string | undefined>>;
}

export class IndexService {
  private readonly options: IndexServiceOptions;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(options: IndexServiceOptions) {
    this.options = options;
  }

  /** The repository's files at `commit`, read from the mirror. */
  private async tree(repository: string, commit: string): Promise<SourceTree> {
    const cwd = await this.options.repositories.ensureCommit(repository, commit);
    const env = gitEnv(this.options.hostEnv);
    return {
      files: async () => {
        const result = await run("git", ["ls-tree", "-r", "-z", "--name-only", commit], { cwd, env });
        if (result.code !== 0) throw new ValidationError(`cannot list the files of ${repository} at ${commit}: ${result.stderr.trim()}`);
        return result.stdout.toString("utf8").split("\0").filter(Boolean);
      },
      read: async (path) => {
        const result = await run("git", ["cat-file", "blob", `${commit}:${path}`], { cwd, env });
        return result.code === 0 ? result.stdout.toString("utf8") : undefined;
      },
    };
  }

  /** Infers the repository's indexing jobs at a commit (default: HEAD) and queues those not done yet. */
  async plan(input: unknown): Promise<IndexPlanResponse> {
    const parsed = IndexRequest.safeParse(input);
    if (!parsed.success) throw validationErrorFrom(parsed.error, "invalid index request");
    const request = parsed.data;
    const previous = this.locks.get(request.repository) ?? Promise.resolve();
    const mine = previous.catch(() => undefined).then(() => this.planLocked(request));
    this.locks.set(request.repository, mine);
    try {
      return await mine;
    } finally {
      if (this.locks.get(request.repository) === mine) this.locks.delete(request.repository);
    }
  }

  private async planLocked(request: IndexRequest): Promise<IndexPlanResponse> {
    const ref = request.commit ?? "HEAD";
    const commit = await this.options.repositories.resolveCommit(request.repository, ref);
    // The coordinator's index config for the repository, when it holds one, replaces the tree's file.
    const override = (await this.options.store.indexes.getPolicy(request.repository))?.config ?? undefined;
    const plans = await inferIndexPlans(await this.tree(request.repository, commit), { repository: request.repository, commit, queue: request.queue, override });
    const entries: IndexPlanEntry[] = [];
    for (const plan of plans) {
      const base = { root: plan.root, indexer: plan.indexer, indexerVersion: plan.indexerVersion, source: plan.source, spec: plan.spec };
      if (request.dryRun) {
        entries.push({ ...base, action: "dry-run", index: null });
        continue;
      }
      const key = { repository: request.repository, commit, root: plan.root, indexer: plan.indexer, indexerVersion: plan.indexerVersion };
      const existing = await this.options.store.indexes.findLive(key);
      if (existing) {
        entries.push({ ...base, action: "existing", index: indexView(await this.sync(existing)) });
        continue;
      }
      const now = this.options.clock.now();
      const job = await this.options.store.jobs.enqueue({ spec: plan.spec, ref, commit }, now);
      const record = await this.options.store.indexes.create({ ...key, jobId: job.id, artifact: plan.artifact }, now);
      this.options.logger.info("indexing queued", { jobId: job.id, indexId: record.id, repository: request.repository, commit, root: plan.root });
      entries.push({ ...base, action: "queued", index: indexView(record) });
    }
    return { repository: request.repository, commit, entries };
  }

  /** Brings a pending index up to date with its job. */
  private async sync(record: IndexRecord): Promise<IndexRecord> {
    if (record.state !== "pending") return record;
    const detail = await this.options.store.jobs.getJob(record.jobId);
    const now = (): number => this.options.clock.now();
    try {
      if (!detail) return await this.options.store.indexes.fail(record.id, `job ${record.jobId} does not exist`, now());
      const { job } = detail;
      if (!isTerminal(job.state)) return record;
      if (job.state !== "completed") return await this.options.store.indexes.fail(record.id, `job ${job.id} ${job.state}${job.failureMessage ? `: ${job.failureMessage}` : ""}`, now());
      const artifact = await this.options.store.outputs.readArtifact(job.id, record.artifact);
      if (!artifact) return await this.options.store.indexes.fail(record.id, `job ${job.id} completed without uploading ${record.artifact}`, now());
      const bytes = await collect(artifact.chunks);
      let counts: ReturnType<typeof countScip>;
      try {
        counts = countScip(readScip(bytes));
      } catch (error) {
        return await this.options.store.indexes.fail(record.id, `${record.artifact} of job ${job.id} is not a SCIP index: ${(error as Error).message}`, now());
      }
      const done = await this.options.store.indexes.complete(record.id, { ...counts, size: bytes.length }, now());
      this.options.logger.info("index registered", { indexId: done.id, jobId: job.id, repository: done.repository, root: done.root, ...counts });
      return done;
    } catch (error) {
      if (!(error instanceof ConflictError)) throw error;
      return (await this.options.store.indexes.get(record.id)) ?? record;
    }
  }

  async list(filter: { repository?: string | undefined; commit?: string | undefined; limit?: number | undefined }): Promise<IndexView[]> {
    const records = await this.options.store.indexes.list({ repository: filter.repository, commit: filter.commit, limit: filter.limit ?? 100 });
    return Promise.all(records.map(async (record) => indexView(await this.sync(record))));
  }

  private async record(id: number): Promise<IndexRecord> {
    const record = await this.options.store.indexes.get(id);
    if (!record) throw new NotFoundError(`index ${id} does not exist`);
    return this.sync(record);
  }

  async view(id: number): Promise<IndexView> {
    return indexView(await this.record(id));
  }

  /** The bytes of a completed index. */
  async file(id: number): Promise<{ record: ArtifactRecord; chunks: AsyncIterable<Uint8Array> }> {
    const record = await this.record(id);
    if (record.state !== "completed") {
      throw new ConflictError(`index ${id} is ${record.state}${record.failureMessage ? ` (${record.failureMessage})` : ""}: there is no file to download`);
    }
    const artifact = await this.options.store.outputs.readArtifact(record.jobId, record.artifact);
    if (!artifact) throw new NotFoundError(`the file of index ${id} (job ${record.jobId}, ${record.artifact}) is gone`);
    return artifact;
  }
}
