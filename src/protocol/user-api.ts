/** The user API under `/api`: what the CLI and the web UI send and receive. */
import { z } from "zod";
import { Isolation, QueueName, RepositoryName } from "./job-spec.ts";
import { JobState } from "./job.ts";
import { WarmPoolReport } from "./executor-api.ts";
import { hasControlCharacter } from "./paths.ts";

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
  protocolVersion: z.number().int(),
  runtime: z.string(),
  isolation: z.array(Isolation),
  queues: z.array(z.string()),
  firstSeenAt: z.string(),
  lastHeartbeatAt: z.string(),
  /** False once the executor missed its lease window. */
  alive: z.boolean(),
  runningJobIds: z.array(z.number().int()),
  /** Its warm microVM pool at its last heartbeat; null without one. */
  warmPool: WarmPoolReport.nullable(),
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

/**
 * Why a repository source is refused, or undefined: git is handed it as an argument, so nothing
 * that reads as an option, a remote-helper transport (`ext::cmd`), a URL scheme beyond
 * http(s)/ssh/git, or a host that reads as an ssh option.
 */
export function repositorySourceProblem(source: string): string | undefined {
  if (hasControlCharacter(source)) return "contains a control character";
  if (source !== source.trim()) return "has leading or trailing whitespace";
  if (source.startsWith("-")) return "may not start with '-' (git would read it as an option)";
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(source)) return "names a git remote helper (<transport>::...), which runs commands; give an http(s), ssh or git URL or a path";
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(source)?.[1]?.toLowerCase();
  if (scheme === "file") return "is a file:// URL; give the repository's path instead";
  if (scheme !== undefined && !["http", "https", "ssh", "git", "git+ssh", "ssh+git"].includes(scheme)) return `uses the ${scheme}:// scheme; give an http(s), ssh or git URL or a path`;
  if (scheme !== undefined && /^[^:]+:\/\/([^@/]*@)?[-]/.test(source)) return "names a host starting with '-' (ssh would read it as an option)";
  const scpHost = scheme === undefined ? /^([^/:]+):/.exec(source)?.[1] : undefined;
  if (scpHost !== undefined && /^([^@]*@)?-/.test(scpHost)) return "names a host starting with '-' (ssh would read it as an option)";
  return undefined;
}

export const RepositorySource = z
  .string()
  .min(1)
  .max(4096)
  .superRefine((source, ctx) => {
    const problem = repositorySourceProblem(source);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

export const AddRepositoryRequest = z.strictObject({
  name: RepositoryName,
  /** A local path or an http(s), ssh or git URL git can clone from. */
  source: RepositorySource,
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
