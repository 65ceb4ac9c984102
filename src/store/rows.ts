/**
 * Row -> record mapping shared by the backends. Both use the same column names; drivers differ
 * only in how they hand values over (SQLite: JSON text and 0/1, Postgres: parsed JSON and booleans;
 * integers may arrive as numbers or strings), which is smoothed over here.
 *
 * Log entries are stored lazily, by both backends: an entry's row is made when the attempt first
 * uses it (starts, finishes or appends to it), so a claim writes no entry rows and ending an
 * attempt rewrites none. `plannedEntry` says where a key sits in a job; `currentEntries` fills in
 * the entries an attempt never touched, as pending while it may still run them, else skipped.
 */
import { NETWORK_MODES, type JobSpec, type JobState } from "../protocol/index.ts";
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
  network_rank: Int;
  executor_name: string | null;
  failure_message: string | null;
  cancel_requested: Int | boolean;
  created_at: Int;
  queued_at: Int;
  started_at: Int | null;
  finished_at: Int | null;
  lease_expires_at: Int | null;
  /** The job token of the job's latest attempt (live only while the job is processing it). */
  token_hash?: string | null;
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

/** Specs stored before jobs had a network asked for none (JobSpec's default, without a parse). */
function withNetwork(spec: JobSpec): JobSpec {
  return (spec as Partial<JobSpec>).network ? spec : { ...spec, network: { mode: "none" } };
}

export function toJob(row: JobRow): JobRecord {
  return {
    id: Number(row.id),
    queue: row.queue,
    repository: row.repository,
    ref: row.ref,
    commit: row.commit_sha,
    // Written by enqueue() after validation; parsing it with zod on every read would cost more than it guards.
    spec: withNetwork((typeof row.spec === "string" ? JSON.parse(row.spec) : row.spec) as JobSpec),
    state: row.state as JobState,
    attempt: Number(row.attempt),
    maxAttempts: Number(row.max_attempts),
    isolation: row.isolation as JobRecord["isolation"],
    network: NETWORK_MODES[Number(row.network_rank)] ?? "none",
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

/** Where a log entry sits in a job: prepare first, the steps in order, finalize last; undefined for a key the job lacks. */
export function plannedEntry(spec: JobSpec, key: string): { kind: EntryRecord["kind"]; index: number } | undefined {
  if (key === "prepare") return { kind: "prepare", index: 0 };
  if (key === "finalize") return { kind: "finalize", index: spec.steps.length + 1 };
  const step = spec.steps.findIndex((candidate) => candidate.key === key);
  return step < 0 ? undefined : { kind: "step", index: step + 1 };
}

/**
 * The entries of a job's current attempt: the stored ones, and every planned one (prepare and the
 * steps; finalize only once used) that the attempt has not touched. Those are pending while the
 * attempt runs or before the first claim, and skipped once the attempt ended.
 */
export function currentEntries(job: JobRecord, stored: EntryRecord[]): EntryRecord[] {
  const open = job.state === "processing" || (job.state === "queued" && job.attempt === 0);
  const byKey = new Map(stored.map((entry) => [entry.key, entry]));
  const untouched = (key: string, kind: EntryRecord["kind"], index: number): EntryRecord => ({
    key,
    kind,
    index,
    state: open ? "pending" : "skipped",
    exitCode: null,
    durationMs: null,
    startedAt: null,
    finishedAt: null,
    size: 0,
    message: null,
  });
  const planned = [untouched("prepare", "prepare", 0), ...job.spec.steps.map((step, index) => untouched(step.key, "step", index + 1))];
  const merged = planned.map((entry) => byKey.get(entry.key) ?? entry);
  const plannedKeys = new Set(planned.map((entry) => entry.key));
  merged.push(...stored.filter((entry) => !plannedKeys.has(entry.key)));
  return merged
    .map((entry) => (entry.state === "pending" && !open ? { ...entry, state: "skipped" as const } : entry))
    .sort((a, b) => a.index - b.index);
}
