/** Index rows as both backends store them (tables code_indexes, index_policies), and their records. */
import type { IndexPolicyRecord, IndexRecord, IndexState } from "./store.ts";

export interface IndexRow {
  id: number;
  repository: string;
  commit_sha: string;
  root: string;
  indexer: string;
  indexer_version: string;
  job_id: number;
  artifact: string;
  state: string;
  documents: number | null;
  symbols: number | null;
  occurrences: number | null;
  size: number | null;
  failure_message: string | null;
  created_at: number;
  updated_at: number;
}

export function indexRecord(row: IndexRow): IndexRecord {
  return {
    id: Number(row.id),
    repository: row.repository,
    commit: row.commit_sha,
    root: row.root,
    indexer: row.indexer,
    indexerVersion: row.indexer_version,
    jobId: Number(row.job_id),
    artifact: row.artifact,
    state: row.state as IndexState,
    counts:
      row.state === "completed"
        ? { documents: Number(row.documents), symbols: Number(row.symbols), occurrences: Number(row.occurrences), size: Number(row.size) }
        : null,
    failureMessage: row.failure_message,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

export interface IndexPolicyRow {
  repository: string;
  auto_index: number | boolean;
  config: string | null;
  seen_head: string | null;
  updated_at: number;
}

export function indexPolicyRecord(row: IndexPolicyRow): IndexPolicyRecord {
  return { repository: row.repository, autoIndex: Boolean(row.auto_index), config: row.config, seenHead: row.seen_head, updatedAt: Number(row.updated_at) };
}
