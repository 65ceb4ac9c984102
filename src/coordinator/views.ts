/** Store records -> the user API's views (ISO timestamps, secrets masked). */
import { isoOrNull } from "../common/clock.ts";
import { maskSecrets } from "../protocol/index.ts";
import type { EntryView, ExecutorView, JobSummary, JobView, QueueView } from "../protocol/index.ts";
import type { EntryRecord, ExecutorRecord, JobDetail, JobRecord, QueueStats } from "../store/index.ts";

export function jobSummary(job: JobRecord): JobSummary {
  return {
    id: job.id,
    queue: job.queue,
    repository: job.repository,
    ref: job.ref,
    commit: job.commit,
    state: job.state,
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    isolation: job.isolation,
    executorName: job.executorName,
    failureMessage: job.failureMessage,
    cancelRequested: job.cancelRequested,
    createdAt: new Date(job.createdAt).toISOString(),
    queuedAt: new Date(job.queuedAt).toISOString(),
    startedAt: isoOrNull(job.startedAt),
    finishedAt: isoOrNull(job.finishedAt),
  };
}

export function entryView(entry: EntryRecord): EntryView {
  return {
    key: entry.key,
    kind: entry.kind,
    state: entry.state,
    exitCode: entry.exitCode,
    durationMs: entry.durationMs,
    startedAt: isoOrNull(entry.startedAt),
    finishedAt: isoOrNull(entry.finishedAt),
    size: entry.size,
    message: entry.message,
  };
}

export function jobView(detail: JobDetail): JobView {
  const entries = detail.entries.map(entryView);
  return {
    ...jobSummary(detail.job),
    spec: maskSecrets(detail.job.spec),
    entries,
    steps: entries.filter((entry) => entry.kind === "step"),
    artifacts: detail.artifacts.map((artifact) => ({ ...artifact, createdAt: new Date(artifact.createdAt).toISOString() })),
  };
}

export function executorView(executor: ExecutorRecord, now: number, aliveWindowMs: number): ExecutorView {
  return {
    name: executor.executorName,
    hostname: executor.hostname,
    version: executor.version,
    protocolVersion: executor.protocolVersion,
    runtime: executor.runtime,
    isolation: executor.isolation,
    queues: executor.queues,
    firstSeenAt: new Date(executor.firstSeenAt).toISOString(),
    lastHeartbeatAt: new Date(executor.lastHeartbeatAt).toISOString(),
    alive: now - executor.lastHeartbeatAt <= aliveWindowMs,
    runningJobIds: executor.runningJobIds,
    warmPool: executor.warmPool,
  };
}

export function queueView(queue: QueueStats, now: number): QueueView {
  return {
    name: queue.name,
    queued: queue.queued,
    processing: queue.processing,
    oldestQueuedAt: isoOrNull(queue.oldestQueuedAt),
    oldestWaitMs: queue.oldestQueuedAt === null ? null : Math.max(0, now - queue.oldestQueuedAt),
  };
}
