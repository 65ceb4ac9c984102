/** The user API under `/api`: what the CLI and the web UI send and receive. */
import { z } from "zod";
import { Isolation, QueueName, RepositoryName } from "./job-spec.ts";
import { JobState } from "./job.ts";

export const API_AUTH_SCHEME = "Bearer";

export const ListJobsQuery = z.strictObject({
  state: JobState.optional(),
  queue: QueueName.optional(),
  repository: RepositoryName.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  /** Only jobs with an id below this one (paging backwards). */
  before: z.coerce.number().int().positive().optional(),
});
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

export const ExecutorView = z.object({
  name: z.string(),
  hostname: z.string(),
  version: z.string(),
  runtime: z.string(),
  isolation: z.array(Isolation),
  queues: z.array(z.string()),
  firstSeenAt: z.string(),
  lastHeartbeatAt: z.string(),
  /** False once the executor missed its lease window. */
  alive: z.boolean(),
  runningJobIds: z.array(z.number().int()),
});
export type ExecutorView = z.infer<typeof ExecutorView>;

export const QueueView = z.object({
  name: z.string(),
  queued: z.number().int(),
  processing: z.number().int(),
  oldestQueuedAt: z.string().nullable(),
  oldestWaitMs: z.number().int().nullable(),
});
export type QueueView = z.infer<typeof QueueView>;

export const AddRepositoryRequest = z.strictObject({
  name: RepositoryName,
  /** A local path or a URL git can clone from. */
  source: z.string().min(1).max(4096),
});
export type AddRepositoryRequest = z.infer<typeof AddRepositoryRequest>;

export const RepositoryView = z.object({
  name: RepositoryName,
  source: z.string(),
  createdAt: z.string(),
  headCommit: z.string().nullable(),
});
export type RepositoryView = z.infer<typeof RepositoryView>;

/** Server-sent events on GET /api/jobs/:id/events. */
export const LogEvent = z.object({
  key: z.string(),
  /** Byte offset of this chunk in the entry, and the entry's size after it. */
  offset: z.number().int(),
  end: z.number().int(),
  text: z.string(),
});
export type LogEvent = z.infer<typeof LogEvent>;
