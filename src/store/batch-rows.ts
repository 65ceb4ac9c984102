/** Batch rows as both backends store them, and their records. */
import type { JobState } from "../protocol/index.ts";
import type { BatchApplyRecord, BatchEntryPatch, BatchEntryRecord, BatchRecord, BatchSource, BatchVersionRecord } from "./store.ts";

export interface BatchRow {
  id: number;
  name: string;
  description: string;
  latest_version: number;
  created_at: number;
  updated_at: number;
}

export interface BatchVersionRow {
  batch_id: number;
  version: number;
  spec: unknown;
  spec_text: string;
  source: string;
  created_at: number;
}

export interface BatchEntryRow {
  id: number;
  batch_id: number;
  version: number;
  repository: string;
  workspace: string;
  branch: string;
  commit_sha: string;
  job_id: number | null;
  cached_from: number | null;
  state: string;
  diff_files: number | null;
  diff_added: number | null;
  diff_deleted: number | null;
  cache_key: string;
  failure_message: string | null;
  apply_state: string | null;
  apply_branch: string | null;
  apply_sha: string | null;
  apply_message: string | null;
  applied_at: number | null;
  created_at: number;
  updated_at: number;
}

const num = (value: unknown): number => Number(value);
const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));

export function batchRecord(row: BatchRow): BatchRecord {
  return {
    id: num(row.id),
    name: row.name,
    description: row.description,
    latestVersion: num(row.latest_version),
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
  };
}

export function batchVersionRecord(row: BatchVersionRow): BatchVersionRecord {
  return {
    batchId: num(row.batch_id),
    version: num(row.version),
    spec: typeof row.spec === "string" ? (JSON.parse(row.spec) as unknown) : row.spec,
    specText: row.spec_text,
    source: row.source as BatchSource,
    createdAt: num(row.created_at),
  };
}

export function batchEntryRecord(row: BatchEntryRow): BatchEntryRecord {
  const apply: BatchApplyRecord | null =
    row.apply_state === null
      ? null
      : {
          state: row.apply_state as BatchApplyRecord["state"],
          branch: row.apply_branch ?? "",
          sha: row.apply_sha,
          message: row.apply_message,
          at: num(row.applied_at),
        };
  return {
    id: num(row.id),
    batchId: num(row.batch_id),
    version: num(row.version),
    repository: row.repository,
    workspace: row.workspace,
    branch: row.branch,
    commit: row.commit_sha,
    jobId: numOrNull(row.job_id),
    cachedFromEntryId: numOrNull(row.cached_from),
    state: row.state as JobState,
    diffStat: row.diff_files === null ? null : { files: num(row.diff_files), added: num(row.diff_added), deleted: num(row.diff_deleted) },
    cacheKey: row.cache_key,
    failureMessage: row.failure_message,
    apply,
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
  };
}

/** The columns a patch sets, as column -> value (undefined fields left out). */
export function patchColumns(patch: BatchEntryPatch): Record<string, string | number | null> {
  const columns: Record<string, string | number | null> = {};
  if (patch.state !== undefined) columns.state = patch.state;
  if (patch.jobId !== undefined) columns.job_id = patch.jobId;
  if (patch.cachedFromEntryId !== undefined) columns.cached_from = patch.cachedFromEntryId;
  if (patch.failureMessage !== undefined) columns.failure_message = patch.failureMessage;
  if (patch.diffStat !== undefined) {
    columns.diff_files = patch.diffStat?.files ?? null;
    columns.diff_added = patch.diffStat?.added ?? null;
    columns.diff_deleted = patch.diffStat?.deleted ?? null;
  }
  if (patch.apply !== undefined) {
    columns.apply_state = patch.apply?.state ?? null;
    columns.apply_branch = patch.apply?.branch ?? null;
    columns.apply_sha = patch.apply?.sha ?? null;
    columns.apply_message = patch.apply?.message ?? null;
    columns.applied_at = patch.apply?.at ?? null;
  }
  return columns;
}

export const ENTRY_ORDER = "ORDER BY repository, workspace, id";
