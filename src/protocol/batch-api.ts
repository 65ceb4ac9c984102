/**
 * The batch API's wire types (what the CLI, the web UI and the local mode send and receive) and
 * the normalized batch spec they carry. The routes are listed at the top of batch.ts, which
 * re-exports everything here.
 */
import { z } from "zod";
import { Identifier, JobSpec, RepositoryName } from "./job-spec.ts";
import { JobState } from "./job.ts";

// ---------------------------------------------------------------------------------------------
// The normalized batch spec (batch.ts parses what users write into this)
// ---------------------------------------------------------------------------------------------

export const OnEntry = z.union([
  z.strictObject({ repository: z.string(), branch: z.string().optional() }),
  z.strictObject({ repositoriesMatching: z.strictObject({ path: z.string(), in: z.string().optional() }) }),
]);
export type OnEntry = z.infer<typeof OnEntry>;

export const BatchStep = z.strictObject({
  key: Identifier,
  image: z.string().optional(),
  commands: z.array(z.string()).min(1),
  dir: z.string(),
  env: z.record(z.string(), z.string()),
  timeoutMs: z.number().int().positive().optional(),
  if: z.string().optional(),
  outputs: z.record(z.string(), z.strictObject({ value: z.string().optional(), fromFile: z.string().optional(), format: z.enum(["text", "json"]) })),
  files: z.record(z.string(), z.string()),
});
export type BatchStep = z.infer<typeof BatchStep>;

export const ChangesetTemplate = z.strictObject({
  title: z.string(),
  body: z.string(),
  branch: z.string(),
  commit: z.strictObject({ message: z.string(), author: z.strictObject({ name: z.string(), email: z.string() }) }),
});
export type ChangesetTemplate = z.infer<typeof ChangesetTemplate>;

/** The normalized spec, as stored with each version. */
export const BatchSpec = z.strictObject({
  name: Identifier,
  description: z.string(),
  on: z.array(OnEntry),
  workspaces: z.array(z.strictObject({ rootAtLocationOf: z.string(), in: z.string(), onlyFetchWorkspace: z.boolean() })),
  steps: z.array(BatchStep),
  changesetTemplate: ChangesetTemplate,
  /** The job-level options, as written, for each job's JobSpecInput (queue defaults to "batch"). */
  job: z.record(z.string(), z.unknown()),
});
export type BatchSpec = z.infer<typeof BatchSpec>;

// ---------------------------------------------------------------------------------------------
// Requests and views
// ---------------------------------------------------------------------------------------------

export const BatchName = Identifier;

/** An entry's state: its job's state (a cached or uploaded entry is completed or failed). */
export const BatchEntryState = JobState;
export type BatchEntryState = z.infer<typeof BatchEntryState>;

/** How applying one entry ended: a new commit pushed, already there, a conflict, an error. */
export const ApplyState = z.enum(["pushed", "unchanged", "conflict", "failed"]);
export type ApplyState = z.infer<typeof ApplyState>;

export const DiffStat = z.object({ files: z.number().int(), added: z.number().int(), deleted: z.number().int() });
export type DiffStat = z.infer<typeof DiffStat>;

export const BatchEntryView = z.object({
  id: z.number().int(),
  version: z.number().int(),
  repository: RepositoryName,
  /** The workspace directory, "." for the repository root. */
  workspace: z.string(),
  /** The branch the commit was resolved from, and the commit (a sha). */
  branch: z.string(),
  commit: z.string(),
  state: BatchEntryState,
  /** The job that ran (or runs) it; null for cached and uploaded entries. */
  jobId: z.number().int().nullable(),
  /** True when the result was reused from an earlier entry with the same cache key. */
  cached: z.boolean(),
  cachedFromEntryId: z.number().int().nullable(),
  cacheKey: z.string(),
  /** Known once the entry completed: files changed, lines added and deleted. */
  diffStat: DiffStat.nullable(),
  failureMessage: z.string().nullable(),
  /** The last apply's result for this entry, if any. */
  apply: z
    .object({
      state: ApplyState,
      branch: z.string(),
      /** The commit on the branch (pushed or found unchanged). */
      sha: z.string().nullable(),
      message: z.string().nullable(),
      at: z.string(),
    })
    .nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type BatchEntryView = z.infer<typeof BatchEntryView>;

export const BatchCounts = z.record(z.string(), z.number().int());

export const BatchVersionView = z.object({
  version: z.number().int(),
  /** `server`: jobs on executors; `local`: uploaded by `airlock batch run --local`. */
  source: z.enum(["server", "local"]),
  createdAt: z.string(),
  /** The spec's text as submitted, and its normalized form. */
  specText: z.string(),
  spec: BatchSpec,
});
export type BatchVersionView = z.infer<typeof BatchVersionView>;

export const BatchSummary = z.object({
  name: BatchName,
  description: z.string(),
  latestVersion: z.number().int(),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** Entries of the latest version by state, plus "cached". */
  counts: BatchCounts,
  /** Entries of the latest version. */
  total: z.number().int(),
  /** True while some entry of the latest version has not ended. */
  running: z.boolean(),
});
export type BatchSummary = z.infer<typeof BatchSummary>;

export const BatchView = BatchSummary.extend({
  /** Every version number of the batch, oldest first. */
  versions: z.array(z.number().int()),
  /** The version shown (the latest unless asked otherwise) and its entries. */
  version: BatchVersionView,
  /** The shown version's entries, by repository then workspace. */
  entries: z.array(BatchEntryView),
  /** Problems that did not stop the preview (a repository with no workspace). */
  warnings: z.array(z.string()).default([]),
});
export type BatchView = z.infer<typeof BatchView>;

/** POST /api/batches and /api/batches/resolve: the spec's text (so errors can name lines). */
export const PreviewRequest = z.strictObject({ spec: z.string().min(1).max(1_000_000) });
export type PreviewRequest = z.infer<typeof PreviewRequest>;

export const RetryRequest = z.strictObject({ failed: z.boolean().default(false) });
export type RetryRequest = z.infer<typeof RetryRequest>;

export const ApplyRequest = z.strictObject({
  /** Only these repositories (default: every completed entry with a non-empty diff). */
  repositories: z.array(RepositoryName).max(10_000).optional(),
  version: z.number().int().positive().optional(),
});
export type ApplyRequest = z.infer<typeof ApplyRequest>;

export const ApplyResult = z.object({
  entryId: z.number().int(),
  repository: RepositoryName,
  workspace: z.string(),
  branch: z.string(),
  state: ApplyState,
  sha: z.string().nullable(),
  message: z.string().nullable(),
});
export type ApplyResult = z.infer<typeof ApplyResult>;

export const ApplyResponse = z.object({ results: z.array(ApplyResult), batch: BatchView });
export type ApplyResponse = z.infer<typeof ApplyResponse>;

/** One job a preview would run (POST /api/batches/resolve): what the local mode runs. */
export const ResolvedWorkspace = z.object({
  repository: RepositoryName,
  workspace: z.string(),
  branch: z.string(),
  commit: z.string(),
  cacheKey: z.string(),
  /** The job spec an executor would get (secrets included: the caller holds the API token). */
  spec: JobSpec,
});
export type ResolvedWorkspace = z.infer<typeof ResolvedWorkspace>;

export const ResolvedBatch = z.object({
  name: BatchName,
  spec: BatchSpec,
  workspaces: z.array(ResolvedWorkspace),
  warnings: z.array(z.string()),
});
export type ResolvedBatch = z.infer<typeof ResolvedBatch>;

/** Results computed outside the executors (the local mode), stored as a new version. */
export const BatchUploadEntry = z.strictObject({
  repository: RepositoryName,
  workspace: z.string().default("."),
  commit: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, "must be a full commit sha"),
  branch: z.string().min(1).max(256).optional(),
  state: z.enum(["completed", "failed"]),
  /** The `git diff --binary` of the workspace against the commit ("" for none). */
  diff: z.string().max(256 * 1024 * 1024).default(""),
  /** The run's log text, shown by `batch logs`. */
  log: z.string().max(64 * 1024 * 1024).default(""),
  failureMessage: z.string().max(16_384).optional(),
  /** The steps' outputs and changed files, for the changeset template at apply. */
  outputs: z.record(z.string(), z.unknown()).default({}),
});
export type BatchUploadEntry = z.input<typeof BatchUploadEntry>;

export const BatchUpload = z.strictObject({
  spec: z.string().min(1).max(1_000_000),
  /** The runtime the steps ran in, for the record. */
  runtime: z.string().max(64).optional(),
  entries: z.array(BatchUploadEntry).min(1).max(10_000),
});
export type BatchUpload = z.input<typeof BatchUpload>;


/** The JSON in BATCH_OUTPUTS_ARTIFACT. */
export const BatchOutputs = z.object({
  outputs: z.record(z.string(), z.unknown()).default({}),
  modified_files: z.array(z.string()).default([]),
  added_files: z.array(z.string()).default([]),
  deleted_files: z.array(z.string()).default([]),
});
export type BatchOutputs = z.infer<typeof BatchOutputs>;
