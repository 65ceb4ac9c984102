/**
 * Batches: previews (a new version, one job per workspace or a cached result), uploads of results
 * computed elsewhere, views, retries, cancels, diffs and logs. Applying is in batch-apply.ts.
 *
 * An entry follows its job: entries not yet ended are brought up to date from their jobs whenever
 * they are read (`sync`), and an entry whose job completed gets its diff stat then. Reads may race
 * on one entry; each writes the same values, so no locking is needed.
 */
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { BATCH_OUTPUTS_ARTIFACT, BatchUpload, parseBatchSpec, type BatchSpec, type BatchSummary, type BatchView, type ResolvedBatch } from "../../protocol/batch.ts";
import { ConflictError, globToRegExp, isTerminal, NotFoundError, summarizeDiff, validationErrorFrom, ValidationError, type JobState } from "../../protocol/index.ts";
import type { BatchEntryRecord, BatchRecord, BatchVersionRecord, NewBatchEntry, Store } from "../../store/index.ts";
import { batchSummary, batchView } from "../batch-views.ts";
import { BatchTargets, cacheKey, jobSpecFor, mapLimit, type BatchTarget } from "./batch-targets.ts";
import type { Repositories } from "./repositories.ts";
import type { JobSecrets } from "../secrets/job-secrets.ts";

export interface BatchServiceOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  repositories: Repositories;
  secrets: JobSecrets;
  hostEnv: Readonly<Record<string, string | undefined>>;
}

export interface EntrySelector {
  repository?: string | undefined;
  workspace?: string | undefined;
  version?: number | undefined;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

export class BatchService {
  readonly targets: BatchTargets;
  private readonly options: BatchServiceOptions;

  constructor(options: BatchServiceOptions) {
    this.options = options;
    this.targets = new BatchTargets({ repositories: options.repositories, hostEnv: options.hostEnv });
  }

  private get store(): Store {
    return this.options.store;
  }

  /** What a preview of `text` would run; stores nothing. */
  async resolve(text: string): Promise<ResolvedBatch> {
    const spec = parseBatchSpec(text);
    const { targets, warnings } = await this.targets.resolve(spec, text);
    if (targets.length === 0) throw new ValidationError(`invalid batch spec: it matches no workspace${warnings.length ? ` (${warnings.join("; ")})` : ""}`, { field: "workspaces" });
    const workspaces = targets.map((target) => ({
      repository: target.repository,
      workspace: target.workspace,
      branch: target.branch,
      commit: target.commit,
      cacheKey: cacheKey(spec, target),
      spec: jobSpecFor(spec, target, text),
    }));
    return { name: spec.name, spec, workspaces, warnings };
  }

  /** A new version of the batch: one job per workspace, or the result of an earlier identical one. */
  async preview(text: string): Promise<BatchView> {
    const resolved = await this.resolve(text);
    // Refused here, before any job is queued, when this coordinator may not keep the secrets.
    const sealed = this.options.secrets.sealBatch(resolved.spec);
    const now = this.options.clock.now();
    const entries: NewBatchEntry[] = [];
    const queued: number[] = [];
    try {
      for (const workspace of resolved.workspaces) {
        const base = { repository: workspace.repository, workspace: workspace.workspace, branch: workspace.branch, commit: workspace.commit, cacheKey: workspace.cacheKey, failureMessage: null };
        const cached = await this.store.batches.findCached(workspace.cacheKey);
        if (cached) {
          entries.push({ ...base, jobId: null, cachedFromEntryId: cached.id, state: "completed", diffStat: cached.diffStat });
          continue;
        }
        const job = await this.store.jobs.enqueue({ ...this.options.secrets.seal(workspace.spec), ref: workspace.branch, commit: workspace.commit }, now);
        queued.push(job.id);
        entries.push({ ...base, jobId: job.id, cachedFromEntryId: null, state: "queued", diffStat: null });
      }
      const created = await this.store.batches.createVersion(
        { name: resolved.name, description: resolved.spec.description, spec: resolved.spec, specText: text, secrets: sealed, source: "server", entries },
        now,
      );
      this.options.logger.info("batch previewed", { batch: resolved.name, version: created.version.version, jobs: queued.length, cached: entries.length - queued.length });
      return this.viewOf(created.batch, created.version, created.entries, created.entries, resolved.warnings);
    } catch (error) {
      for (const id of queued) await this.store.jobs.requestCancel(id, this.options.clock.now()).catch(() => undefined);
      throw error;
    }
  }

  /** Results computed elsewhere (the local mode), stored as a new version. */
  async upload(body: unknown): Promise<BatchView> {
    const parsed = BatchUpload.safeParse(body);
    if (!parsed.success) throw validationErrorFrom(parsed.error, "invalid batch upload");
    const upload = parsed.data;
    const spec = parseBatchSpec(upload.spec);
    const registered = new Set((await this.options.repositories.list()).map((record) => record.name));
    const unknown = [...new Set(upload.entries.filter((entry) => !registered.has(entry.repository)).map((entry) => entry.repository))];
    if (unknown.length > 0) throw new ValidationError(`invalid batch upload: unknown repositories: ${unknown.join(", ")}`, { field: "entries" });
    const entries = await mapLimit(upload.entries, 8, async (entry, index): Promise<NewBatchEntry> => {
      const commit = await this.options.repositories.resolveCommit(entry.repository, entry.commit).catch((error: unknown) => {
        throw new ValidationError(`invalid batch upload: entries.${index}.commit: ${(error as Error).message}`, { field: `entries.${index}.commit` });
      });
      const branch = entry.branch ?? (await this.targets.defaultBranch(entry.repository));
      const target: BatchTarget = { repository: entry.repository, branch, commit, workspace: entry.workspace, onlyFetchWorkspace: this.onlyFetch(spec, entry.repository) };
      const stat = summarizeDiff(entry.diff);
      return {
        repository: entry.repository,
        workspace: entry.workspace,
        branch,
        commit,
        jobId: null,
        cachedFromEntryId: null,
        state: entry.state,
        diffStat: entry.state === "completed" ? { files: stat.files, added: stat.added, deleted: stat.deleted } : null,
        cacheKey: cacheKey(spec, target),
        failureMessage: entry.failureMessage ?? null,
        blobs: { diff: Buffer.from(entry.diff), log: Buffer.from(entry.log), outputs: Buffer.from(JSON.stringify({ outputs: entry.outputs })) },
      };
    });
    const created = await this.store.batches.createVersion(
      { name: spec.name, description: spec.description, spec, specText: upload.spec, secrets: this.options.secrets.sealBatch(spec), source: "local", entries },
      this.options.clock.now(),
    );
    this.options.logger.info("batch results uploaded", { batch: spec.name, version: created.version.version, entries: entries.length, runtime: upload.runtime });
    return this.viewOf(created.batch, created.version, created.entries, created.entries);
  }

  private onlyFetch(spec: BatchSpec, repository: string): boolean {
    return spec.workspaces.find((rule) => globToRegExp(rule.in).test(repository))?.onlyFetchWorkspace ?? false;
  }

  async list(limit = 100): Promise<BatchSummary[]> {
    const batches = await this.store.batches.listBatches(limit);
    return Promise.all(batches.map(async (batch) => batchSummary(batch, await this.sync(await this.store.batches.listEntries(batch.id, batch.latestVersion)))));
  }

  async batch(name: string): Promise<BatchRecord> {
    const batch = await this.store.batches.getBatch(name);
    if (!batch) throw new NotFoundError(`batch "${name}" does not exist`);
    return batch;
  }

  /** A version of the batch (the latest by default) and its entries, brought up to date. */
  async entries(name: string, version?: number): Promise<{ batch: BatchRecord; version: BatchVersionRecord; entries: BatchEntryRecord[] }> {
    const batch = await this.batch(name);
    const record = await this.store.batches.getVersion(batch.id, version ?? batch.latestVersion);
    if (!record) throw new NotFoundError(`batch "${name}" has no version ${version}`);
    return { batch, version: record, entries: await this.sync(await this.store.batches.listEntries(batch.id, record.version)) };
  }

  async view(name: string, version?: number): Promise<BatchView> {
    const { batch, version: record, entries } = await this.entries(name, version);
    const latest = record.version === batch.latestVersion ? entries : await this.sync(await this.store.batches.listEntries(batch.id, batch.latestVersion));
    return this.viewOf(batch, record, entries, latest);
  }

  private async viewOf(batch: BatchRecord, version: BatchVersionRecord, entries: BatchEntryRecord[], latest: BatchEntryRecord[], warnings: string[] = []): Promise<BatchView> {
    return batchView(batch, version, await this.store.batches.listVersions(batch.id), entries, latest, warnings);
  }

  /** Brings entries whose job has not ended up to date with it. */
  async sync(entries: BatchEntryRecord[]): Promise<BatchEntryRecord[]> {
    return mapLimit(entries, 8, async (entry) => {
      if (entry.jobId === null || (isTerminal(entry.state) && (entry.state !== "completed" || entry.diffStat !== null))) return entry;
      const detail = await this.store.jobs.getJob(entry.jobId);
      if (!detail) return entry;
      const state: JobState = detail.job.state;
      if (state === entry.state && state !== "completed") return entry;
      let diffStat = entry.diffStat;
      if (state === "completed") {
        const artifact = await this.store.outputs.readArtifact(entry.jobId, "diff");
        const stat = summarizeDiff(artifact ? (await collect(artifact.chunks)).toString("utf8") : "");
        diffStat = { files: stat.files, added: stat.added, deleted: stat.deleted };
      }
      return this.store.batches.updateEntry(entry.id, { state, diffStat, failureMessage: detail.job.failureMessage }, this.options.clock.now());
    });
  }

  /** Runs entries of the latest version again as new jobs (only the unsuccessful ones with `failedOnly`). */
  async retry(name: string, failedOnly: boolean): Promise<BatchView> {
    const { batch, version, entries } = await this.entries(name);
    const spec = await this.options.secrets.revealBatch(batch.id, version.version, version.spec as BatchSpec);
    const chosen = entries.filter((entry) => isTerminal(entry.state) && (!failedOnly || entry.state !== "completed"));
    const now = this.options.clock.now();
    for (const entry of chosen) {
      const target: BatchTarget = { repository: entry.repository, branch: entry.branch, commit: entry.commit, workspace: entry.workspace, onlyFetchWorkspace: this.onlyFetch(spec, entry.repository) };
      const job = await this.store.jobs.enqueue({ ...this.options.secrets.seal(jobSpecFor(spec, target, version.specText)), ref: entry.branch, commit: entry.commit }, now);
      await this.store.batches.updateEntry(entry.id, { state: "queued", jobId: job.id, cachedFromEntryId: null, diffStat: null, failureMessage: null, apply: null }, now);
    }
    this.options.logger.info("batch retried", { batch: name, version: version.version, jobs: chosen.length });
    return this.view(batch.name);
  }

  /** Cancels the latest version's unfinished jobs. */
  async cancel(name: string): Promise<BatchView> {
    const { batch, entries } = await this.entries(name);
    for (const entry of entries) {
      if (entry.jobId === null || isTerminal(entry.state)) continue;
      await this.store.jobs.requestCancel(entry.jobId, this.options.clock.now()).catch((error: unknown) => {
        if (!(error instanceof ConflictError)) throw error;
      });
    }
    return this.view(batch.name);
  }

  /** The entry that computed this entry's result (itself unless cached). */
  async source(entry: BatchEntryRecord): Promise<BatchEntryRecord> {
    if (entry.cachedFromEntryId === null) return entry;
    return (await this.store.batches.getEntry(entry.cachedFromEntryId)) ?? entry;
  }

  /** The entry's diff ("" when it has none, or has not completed). */
  async diffOf(entry: BatchEntryRecord): Promise<string> {
    if (entry.state !== "completed") return "";
    const source = await this.source(entry);
    if (source.jobId !== null) {
      const artifact = await this.store.outputs.readArtifact(source.jobId, "diff");
      return artifact ? (await collect(artifact.chunks)).toString("utf8") : "";
    }
    const blob = await this.store.batches.readBlob(source.id, "diff");
    return blob ? Buffer.from(blob).toString("utf8") : "";
  }

  /** The steps' outputs of the entry's result (for the changeset template). */
  async outputsOf(entry: BatchEntryRecord): Promise<Record<string, unknown>> {
    const source = await this.source(entry);
    let bytes: Buffer | undefined;
    if (source.jobId !== null) {
      const artifact = await this.store.outputs.readArtifact(source.jobId, BATCH_OUTPUTS_ARTIFACT);
      bytes = artifact ? await collect(artifact.chunks) : undefined;
    } else {
      const blob = await this.store.batches.readBlob(source.id, "outputs");
      bytes = blob ? Buffer.from(blob) : undefined;
    }
    if (!bytes) return {};
    try {
      return (JSON.parse(bytes.toString("utf8")) as { outputs?: Record<string, unknown> }).outputs ?? {};
    } catch {
      return {};
    }
  }

  /** The entries a selector picks (all of the version when it names no repository). */
  async select(name: string, selector: EntrySelector): Promise<BatchEntryRecord[]> {
    const { entries } = await this.entries(name, selector.version);
    if (selector.repository === undefined) return entries;
    const picked = entries.filter((entry) => entry.repository === selector.repository && (selector.workspace === undefined || entry.workspace === selector.workspace));
    if (picked.length === 0) {
      const where = selector.workspace === undefined ? `repository ${selector.repository}` : `workspace ${selector.workspace} of ${selector.repository}`;
      throw new NotFoundError(`batch "${name}" has no ${where}`);
    }
    return picked;
  }

  /** The combined diff: per entry, a "# repository" comment line before it when several are shown. */
  async diff(name: string, selector: EntrySelector): Promise<string> {
    const entries = await this.select(name, selector);
    const parts = await mapLimit(entries, 8, async (entry) => ({ entry, diff: await this.diffOf(entry) }));
    if (selector.repository !== undefined) return parts.map((part) => part.diff).join("");
    return parts
      .filter((part) => part.diff !== "")
      .map((part) => `# ${part.entry.repository}${part.entry.workspace === "." ? "" : ` (${part.entry.workspace})`} at ${part.entry.commit}\n${part.diff}`)
      .join("");
  }

  /** The logs of one entry's job (or of its upload), each log entry under a header. */
  async logs(name: string, selector: EntrySelector): Promise<string> {
    const entries = await this.select(name, selector);
    if (entries.length > 1) throw new ValidationError(`repository ${selector.repository} has ${entries.length} workspaces in batch "${name}": name one (${entries.map((entry) => entry.workspace).join(", ")})`, { field: "workspace" });
    const entry = entries[0]!;
    const source = await this.source(entry);
    let text = source.id !== entry.id ? `# cached: the result of entry ${source.id} (version ${source.version}${source.jobId !== null ? `, job ${source.jobId}` : ""})\n` : "";
    if (source.jobId === null) {
      const blob = await this.store.batches.readBlob(source.id, "log");
      return text + (blob ? Buffer.from(blob).toString("utf8") : "");
    }
    const detail = await this.store.jobs.getJob(source.jobId);
    if (!detail) return text;
    for (const log of detail.entries) {
      if (log.size === 0 && log.state === "pending") continue;
      const bytes = await this.store.outputs.readLog(source.jobId, detail.job.attempt, log.key, 0, Math.max(log.size, 1));
      text += `── ${log.key} (${log.state}) ──\n${Buffer.from(bytes).toString("utf8")}`;
      if (!text.endsWith("\n")) text += "\n";
    }
    return text;
  }
}
