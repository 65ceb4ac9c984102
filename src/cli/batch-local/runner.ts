/**
 * Runs jobs on this machine with the executor's own code: each job is a JobPayload handed to the
 * executor's JobRun (src/executor/job-runner.ts) with the in-process client of job-client.ts and
 * a runtime from src/runtimes, so preparing the workspace, the sandbox, the steps (templated batch
 * steps included), log redaction and the diff are exactly what an executor does.
 *
 * States of one task: queued -> running -> completed | failed | errored | canceled.
 * Concurrency: at most `parallel` JobRuns at once, taken from the queue in order. `cancel()`
 * stops queued tasks at once and the running ones through JobRun.stop (reported as canceled).
 * Everything runs on the one event loop; no locking needed.
 */
import { randomBytes } from "node:crypto";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../common/logger.ts";
import type { ExecutorConfig } from "../../executor/config.ts";
import { EgressHost } from "../../executor/egress.ts";
import { JobRun } from "../../executor/job-runner.ts";
import { isolationRank, ValidationError, type JobPayload, type JobSpec } from "../../protocol/index.ts";
import { processAlive, type Runtime } from "../../runtimes/index.ts";
import { OWNER_FILE } from "../../executor/workspace.ts";
import { LocalCoordinatorClient, LocalJob, type LocalJobListener } from "./job-client.ts";

export type TaskState = "queued" | "running" | "completed" | "failed" | "errored" | "canceled";

export interface LocalTask {
  /** 1-based, unique in this run; the job id the sandbox is labelled with. */
  id: number;
  repository: string;
  commit: string;
  spec: JobSpec;
}

export interface TaskResult {
  task: LocalTask;
  state: Exclude<TaskState, "queued" | "running">;
  message: string | undefined;
  job: LocalJob | undefined;
  /** The `diff` artifact (empty when the job made no change or did not complete). */
  diff: Buffer;
  startedAt: number;
  finishedAt: number;
}

export interface RunnerOptions {
  runtime: Runtime;
  config: Readonly<ExecutorConfig>;
  logger: Logger;
  parallel: number;
  /** The user token, sent to the coordinator's git endpoint (and redacted from logs like a job token). */
  userToken: string;
  listener: LocalJobListener & { onTaskState?(task: LocalTask, state: TaskState, job: LocalJob | undefined): void };
}

const LOCAL_LEASE_MS = 24 * 60 * 60_000;

/** The payload an executor would have been given for this task (a local token, no lease). */
export function localPayload(task: LocalTask): JobPayload {
  return {
    id: task.id,
    attempt: 1,
    token: randomBytes(24).toString("hex"),
    queue: task.spec.queue,
    spec: task.spec,
    repository: { name: task.repository, commit: task.commit, gitPath: `/.executors/git/${task.repository}` },
    leaseMs: LOCAL_LEASE_MS,
  };
}

/** Refuses tasks whose spec asks for more isolation than the runtime gives (as an executor would not take them). */
export function checkIsolation(tasks: readonly LocalTask[], runtime: Runtime): void {
  const wanting = tasks.filter((task) => isolationRank(task.spec.isolation) > isolationRank(runtime.isolation));
  if (wanting.length === 0) return;
  const levels = [...new Set(wanting.map((task) => task.spec.isolation))].join(", ");
  throw new ValidationError(
    `the spec asks for isolation ${levels}, but runtime ${runtime.name} gives ${runtime.isolation}; choose a stronger --runtime (or lower the spec's isolation)`,
    { field: "isolation" },
  );
}

export class LocalRunner {
  private readonly options: RunnerOptions;
  private readonly client: LocalCoordinatorClient;
  private readonly running = new Set<JobRun>();
  private canceled = false;
  private egress: Promise<EgressHost | undefined> | undefined;

  constructor(options: RunnerOptions) {
    this.options = options;
    this.client = new LocalCoordinatorClient(options.config.urls[0] ?? "");
  }

  /** Runs every task, `parallel` at once; resolves with one result per task, in task order. */
  async run(tasks: readonly LocalTask[]): Promise<TaskResult[]> {
    const results: TaskResult[] = new Array<TaskResult>(tasks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < tasks.length) {
        const index = next;
        next += 1;
        const task = tasks[index] as LocalTask;
        results[index] = await this.runOne(task);
      }
    };
    const workers = Array.from({ length: Math.max(1, Math.min(this.options.parallel, tasks.length)) }, () => worker());
    await Promise.all(workers);
    await this.client.close();
    return results;
  }

  /** Stops queued tasks and the running ones (each ends canceled). */
  cancel(): void {
    this.canceled = true;
    for (const run of this.running) run.stop({ kind: "canceled" });
  }

  private async runOne(task: LocalTask): Promise<TaskResult> {
    const { listener, config } = this.options;
    const startedAt = Date.now();
    if (this.canceled) {
      listener.onTaskState?.(task, "canceled", undefined);
      return { task, state: "canceled", message: "canceled before it started", job: undefined, diff: Buffer.alloc(0), startedAt, finishedAt: startedAt };
    }
    const payload = localPayload(task);
    const remote = { url: `${this.client.currentUrl}${payload.repository?.gitPath ?? ""}`, authHeader: `Authorization: Bearer ${this.options.userToken}` };
    const job = new LocalJob(payload, remote, listener);
    this.client.register(job);
    this.egress ??= EgressHost.create(config, this.options.runtime, this.options.logger);
    const egress = await this.egress;
    const run = new JobRun(payload, { client: this.client, runtime: this.options.runtime, config, logger: this.options.logger, egress });
    this.running.add(run);
    listener.onTaskState?.(task, "running", job);
    try {
      await run.run();
    } finally {
      this.running.delete(run);
    }
    const stop = run.stopReason;
    const state: TaskResult["state"] = stop?.kind === "canceled" ? "canceled" : (job.outcome ?? "errored");
    const result: TaskResult = {
      task,
      state,
      message: job.message ?? (job.outcome ? undefined : "the job ended without a report"),
      job,
      diff: state === "completed" ? (job.artifacts.get("diff") ?? Buffer.alloc(0)) : Buffer.alloc(0),
      startedAt,
      finishedAt: Date.now(),
    };
    listener.onTaskState?.(task, state, job);
    return result;
  }
}

/**
 * Removes what earlier local runs (or executors) of this host left behind when they died: the
 * runtime's labelled sandboxes whose owning process is gone, and their workspaces. Live owners'
 * are kept. Returns how many things went.
 */
export async function reapLeftovers(runtime: Runtime, workspaceRoot: string): Promise<number> {
  let reaped = (await runtime.reapLeftovers?.()) ?? 0;
  for (const entry of await readdir(workspaceRoot).catch(() => [] as string[])) {
    if (!entry.startsWith("job-")) continue;
    const owner = Number(await readFile(join(workspaceRoot, entry, OWNER_FILE), "utf8").catch(() => "0"));
    if (owner > 0 && (owner === process.pid || processAlive(owner))) continue;
    await rm(join(workspaceRoot, entry), { recursive: true, force: true }).catch(() => undefined);
    reaped += 1;
  }
  return reaped;
}

/** The executor configuration a local run gives JobRun: this machine, one user, no coordinator lease. */
export function localExecutorConfig(options: {
  url: string;
  userToken: string;
  caPath: string | undefined;
  runtime: string;
  parallel: number;
  dataDir: string;
  workspaceRoot: string;
  images: string[];
  hostPath: string;
  dockerHost: string;
  gvisorRuntime: string;
  defaultImage: string;
  name: string;
}): Readonly<ExecutorConfig> {
  return Object.freeze({
    urls: [options.url],
    // JobRun redacts its config's token from every log: here that is the user's token.
    token: options.userToken,
    caPath: options.caPath,
    queues: ["batch"],
    runtime: options.runtime,
    maxJobs: options.parallel,
    // A local batch run boots a VM per repository as it goes; no pool outlives it.
    warmVms: 0,
    warmVmMaxAgeMs: 30 * 60_000,
    warmVmRefill: "restore",
    dataDir: options.dataDir,
    images: options.images,
    workspaceRoot: options.workspaceRoot,
    maxRuntimeMs: 24 * 60 * 60_000,
    heartbeatIntervalMs: 5000,
    logCapBytes: 64 * 1024 * 1024,
    name: options.name,
    logLevel: "warn",
    logFormat: "text",
    hostPath: options.hostPath,
    dockerHost: options.dockerHost,
    gvisorRuntime: options.gvisorRuntime,
    defaultImage: options.defaultImage,
    // The same egress as an executor's: public addresses through a gateway per job, nothing else.
    network: "internet",
    egressAllow: [],
    egressDeny: [],
    egressMaxConnections: 64,
    // Each repository of a batch is fetched once: a local run keeps no repository cache.
    repoCacheMaxBytes: 0,
    packageCacheMaxBytes: 0,
  });
}
