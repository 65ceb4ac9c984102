/**
 * GET /api/queues/history: each queue's recent past in fixed time buckets, for the UI's charts.
 *
 * Computed from the jobs' own timestamps (queued, claimed, finished), so it needs no extra
 * bookkeeping and survives restarts. A job's timestamps describe its current attempt only: an
 * errored attempt that was requeued shows as one wait and one run, the latest.
 */
import { z } from "zod";
import { DurationMs } from "./units.ts";

export const MAX_BUCKETS = 1440;

export const QueueHistoryQuery = z.strictObject({
  /** How far back ("1h", "30m"); at most a day. */
  window: DurationMs.default(60 * 60_000).pipe(z.number().int().min(60_000, "window must be at least 1m").max(24 * 60 * 60_000, "window must be at most 24h")),
  /** Bucket width ("1m"); the window holds at most 1440 buckets. */
  bucket: DurationMs.default(60_000).pipe(z.number().int().min(1000, "bucket must be at least 1s")),
}).refine((query) => query.window / query.bucket <= MAX_BUCKETS, { path: ["bucket"], message: `the window may hold at most ${MAX_BUCKETS} buckets` });
export type QueueHistoryQuery = z.infer<typeof QueueHistoryQuery>;

export const QueueBucket = z.object({
  /** Start of the bucket (ISO-8601); the bucket covers [start, start + bucketMs). */
  start: z.string(),
  /** Jobs waiting at the bucket's end (or now, for the current bucket). */
  depth: z.number().int(),
  /** Longest wait among the jobs waiting at the bucket's end, or null when none waited. */
  oldestWaitMs: z.number().int().nullable(),
  /** Jobs claimed by an executor during the bucket. */
  claimed: z.number().int(),
  /** Median and longest time from queued to claimed of the jobs claimed during the bucket. */
  pickupP50Ms: z.number().int().nullable(),
  pickupMaxMs: z.number().int().nullable(),
  /** Jobs that ended during the bucket, by final state. */
  completed: z.number().int(),
  failed: z.number().int(),
  errored: z.number().int(),
  canceled: z.number().int(),
});
export type QueueBucket = z.infer<typeof QueueBucket>;

export const QueueHistory = z.object({
  from: z.string(),
  to: z.string(),
  bucketMs: z.number().int(),
  queues: z.array(z.object({ name: z.string(), buckets: z.array(QueueBucket) })),
  /**
   * Jobs created before this instant were looked at only if still queued or processing; a job
   * created earlier that ended inside the window is missing from the throughput figures.
   */
  coverageFrom: z.string(),
  /** False when the scan stopped at its job limit before reaching `coverageFrom`'s target. */
  complete: z.boolean(),
});
export type QueueHistory = z.infer<typeof QueueHistory>;
