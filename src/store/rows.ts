/**
 * Row -> record mapping shared by the backends. Both use the same column names; drivers differ
 * only in how they hand values over (SQLite: JSON text and 0/1, Postgres: parsed JSON and booleans;
 * integers may arrive as numbers or strings), which is smoothed over here.
 */
import type { JobSpec, JobState } from "../protocol/index.ts";
import type { EntryRecord, JobRecord } from "./store.ts";

type Int = number | bigint | string;

export interface JobRow {
  id: Int;
  queue: string;
  repository: string | null;
  ref: string | null;
  commit_sha: string | null;
  spec: unknown;
  state: string;
  attempt: Int;
  max_attempts: Int;
  isolation: string;
  executor_name: string | null;
  failure_message: string | null;
  cancel_requested: Int | boolean;
  created_at: Int;
  queued_at: Int;
  started_at: Int | null;
  finished_at: Int | null;
  lease_expires_at: Int | null;
}

export interface EntryRow {
  key: string;
  kind: string;
  idx: Int;
  state: string;
  exit_code: Int | null;
  duration_ms: Int | null;
  started_at: Int | null;
  finished_at: Int | null;
  size: Int;
  message: string | null;
}

function nullableNumber(value: Int | null): number | null {
  return value === null ? null : Number(value);
}

export function toBoolean(value: Int | boolean): boolean {
  return typeof value === "boolean" ? value : Number(value) === 1;
}

export function toJob(row: JobRow): JobRecord {
  return {
    id: Number(row.id),
    queue: row.queue,
    repository: row.repository,
    ref: row.ref,
    commit: row.commit_sha,
    // Written by enqueue() after validation; parsing it with zod on every read would cost more than it guards.
    spec: (typeof row.spec === "string" ? JSON.parse(row.spec) : row.spec) as JobSpec,
    state: row.state as JobState,
    attempt: Number(row.attempt),
    maxAttempts: Number(row.max_attempts),
    isolation: row.isolation as JobRecord["isolation"],
    executorName: row.executor_name,
    failureMessage: row.failure_message,
    cancelRequested: toBoolean(row.cancel_requested),
    createdAt: Number(row.created_at),
    queuedAt: Number(row.queued_at),
    startedAt: nullableNumber(row.started_at),
    finishedAt: nullableNumber(row.finished_at),
    leaseExpiresAt: nullableNumber(row.lease_expires_at),
  };
}

export function toEntry(row: EntryRow): EntryRecord {
  return {
    key: row.key,
    kind: row.kind as EntryRecord["kind"],
    index: Number(row.idx),
    state: row.state as EntryRecord["state"],
    exitCode: nullableNumber(row.exit_code),
    durationMs: nullableNumber(row.duration_ms),
    startedAt: nullableNumber(row.started_at),
    finishedAt: nullableNumber(row.finished_at),
    size: Number(row.size),
    message: row.message,
  };
}

/** What a lapsed lease records on the attempt and on the job (identical for every backend). */
export function leaseExpiredMessages(job: JobRecord): { attempt: string; job: string } {
  const message = `lease expired: executor ${job.executorName ?? "?"} stopped heartbeating`;
  return { attempt: message, job: job.attempt < job.maxAttempts || job.cancelRequested ? message : `${message}; no attempts left (${job.maxAttempts})` };
}
