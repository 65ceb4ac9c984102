/**
 * Jobs as the coordinator shows them: states, steps (log entries), artifacts.
 * Timestamps on the wire are ISO-8601 strings.
 */
import { z } from "zod";
import { Isolation, JobSpec } from "./job-spec.ts";

/**
 * queued -> processing -> completed | failed | errored | canceled.
 * `errored` jobs with attempts left go back to `queued` as a new attempt.
 */
export const JOB_STATES = ["queued", "processing", "completed", "failed", "errored", "canceled"] as const;
export const JobState = z.enum(JOB_STATES);
export type JobState = z.infer<typeof JobState>;

export const TERMINAL_STATES: readonly JobState[] = ["completed", "failed", "errored", "canceled"];
export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** How an attempt ended, as the executor reports it. */
export const AttemptOutcome = z.enum(["completed", "failed", "errored"]);
export type AttemptOutcome = z.infer<typeof AttemptOutcome>;

export const EntryState = z.enum(["pending", "running", "completed", "failed", "skipped"]);
export type EntryState = z.infer<typeof EntryState>;

/** One log entry: workspace preparation ("prepare") or one step. */
export const EntryView = z.object({
  key: z.string(),
  kind: z.enum(["prepare", "step", "finalize"]),
  state: EntryState,
  exitCode: z.number().int().nullable(),
  durationMs: z.number().int().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** Bytes of log stored for this entry. */
  size: z.number().int(),
  message: z.string().nullable(),
});
export type EntryView = z.infer<typeof EntryView>;

export const ArtifactView = z.object({
  name: z.string(),
  size: z.number().int(),
  sha256: z.string(),
  createdAt: z.string(),
});
export type ArtifactView = z.infer<typeof ArtifactView>;

export const JobSummary = z.object({
  id: z.number().int(),
  queue: z.string(),
  repository: z.string().nullable(),
  /** The commit as submitted ("main") and as resolved at submit time (a sha). */
  ref: z.string().nullable(),
  commit: z.string().nullable(),
  state: JobState,
  attempt: z.number().int(),
  maxAttempts: z.number().int(),
  isolation: Isolation,
  executorName: z.string().nullable(),
  failureMessage: z.string().nullable(),
  cancelRequested: z.boolean(),
  createdAt: z.string(),
  queuedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
export type JobSummary = z.infer<typeof JobSummary>;

export const JobView = JobSummary.extend({
  /** The spec with secret values masked. */
  spec: JobSpec,
  /** Log entries of the current attempt, preparation first, then each step in order. */
  entries: z.array(EntryView),
  /** The step entries alone (a convenience for scripts). */
  steps: z.array(EntryView),
  artifacts: z.array(ArtifactView),
});
export type JobView = z.infer<typeof JobView>;
