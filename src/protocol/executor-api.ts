/**
 * The executor API: what executors send to `/.executors/*` and what they get back.
 * Executor-wide calls carry `Authorization: token-executor <secret>`; job-scoped calls carry
 * `Authorization: Bearer <job token>`, valid for one attempt of one job.
 */
import { z } from "zod";
import type { AttemptOutcome } from "./job.ts";
import { Isolation, JobSpec, NetworkMode, QueueName, RepositoryName } from "./job-spec.ts";

export const EXECUTOR_AUTH_SCHEME = "token-executor";

export const ExecutorIdentity = z.object({
  executorName: z.string().min(1).max(200),
  hostname: z.string().max(200).default(""),
  version: z.string().max(64),
  /** The executor protocol it speaks (version.ts); executors from before it was sent speak 1. */
  protocolVersion: z.number().int().min(0).max(1_000_000).default(1),
  runtime: z.string().max(64),
  /** Every isolation level this executor can give a job. */
  isolation: z.array(Isolation).min(1),
  /** What network it can give a job: `internet` (through its egress gateway) takes every job; `none` only jobs without network. */
  network: NetworkMode.default("none"),
  queues: z.array(QueueName).min(1).max(64),
});
export type ExecutorIdentity = z.infer<typeof ExecutorIdentity>;

export const DequeueRequest = ExecutorIdentity.extend({
  /** How long the coordinator may hold the request open waiting for a job. */
  waitMs: z.number().int().min(0).max(60_000).default(25_000),
});
export type DequeueRequest = z.infer<typeof DequeueRequest>;

export const JobPayload = z.object({
  id: z.number().int(),
  attempt: z.number().int().min(1),
  /** The job token: random, valid for this attempt only. */
  token: z.string().min(32),
  queue: z.string(),
  /** The normalized spec; `commit` is a full sha resolved at submit time. */
  spec: JobSpec,
  repository: z
    .object({
      name: RepositoryName,
      commit: z.string().regex(/^[0-9a-f]{40,64}$/),
      /** Path of the git smart HTTP endpoint on the coordinator, e.g. "/.executors/git/acme/web". */
      gitPath: z.string(),
    })
    .nullable(),
  /** Lease length; the executor heartbeats well within it. */
  leaseMs: z.number().int().positive(),
});
export type JobPayload = z.infer<typeof JobPayload>;

/** A microVM executor's warm pool as of a heartbeat: what its idle VMs cost in memory. */
export const WarmPoolReport = z.object({
  /** VMs kept idle when full (both kinds: with and without a network device). */
  size: z.number().int().min(0),
  idle: z.number().int().min(0),
  booting: z.number().int().min(0),
  /** Resident memory of the idle VMs' QEMU processes, summed. */
  idleRssBytes: z.number().int().min(0),
  /** How refills are made: restored from a snapshot, or booted. */
  refill: z.enum(["restore", "boot"]),
});
export type WarmPoolReport = z.infer<typeof WarmPoolReport>;

export const HeartbeatRequest = ExecutorIdentity.extend({
  jobIds: z.array(z.number().int()).max(1000),
  /** Only executors with a warm pool send it. */
  warmPool: WarmPoolReport.optional(),
  telemetry: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
});
export type HeartbeatRequest = z.infer<typeof HeartbeatRequest>;

export const HeartbeatResponse = z.object({
  /** Jobs the coordinator still assigns to this executor; drop any other. */
  knownIds: z.array(z.number().int()),
  /** Jobs a user asked to cancel: kill them. */
  cancelIds: z.array(z.number().int()),
});
export type HeartbeatResponse = z.infer<typeof HeartbeatResponse>;

/** Reply to a log append: the stored size after the append, and whether to stop the job. */
export const LogAppendResponse = z.object({
  size: z.number().int(),
  cancel: z.boolean(),
});
export type LogAppendResponse = z.infer<typeof LogAppendResponse>;

export const StepStartRequest = z.object({}).strict();

export const StepFinishRequest = z.strictObject({
  exitCode: z.number().int().nullable(),
  durationMs: z.number().int().min(0),
  state: z.enum(["completed", "failed", "skipped"]),
  message: z.string().max(4096).optional(),
});
export type StepFinishRequest = z.infer<typeof StepFinishRequest>;

export const FinishRequest = z.strictObject({
  message: z.string().max(16_384).optional(),
});
export type FinishRequest = z.infer<typeof FinishRequest>;

/** Route suffix per outcome: POST /.executors/jobs/:id/{complete,fail,error}. */
export const FINISH_ROUTES: Record<AttemptOutcome, string> = {
  completed: "complete",
  failed: "fail",
  errored: "error",
};

export const ArtifactName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$/, "must be letters, digits, '.', '_', '-' or '/'")
  .refine((name) => !name.split("/").some((part) => part === ".." || part === ""), "may not contain '..' or empty segments");
