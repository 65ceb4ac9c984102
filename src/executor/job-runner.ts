/**
 * Runs one attempt of one job: prepare the workspace, build the sandbox, run the steps in order,
 * collect outputs, report how it ended, clean up.
 *
 * States: PREPARING -> RUNNING(step i) -> FINALIZING -> REPORTING -> DONE. `stop(reason)` aborts
 * the attempt from any state; the reason decides the report:
 *   canceled     -> "failed" (the coordinator records it as canceled)
 *   job-timeout  -> "failed" with the timeout named (the job's own limit)
 *   shutdown     -> "errored" (infrastructure; retried elsewhere)
 *   lease-lost   -> nothing (the attempt is no longer ours to report)
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../common/logger.ts";
import { coerceError, LeaseLostError, SandboxError, StepFailedError, type AttemptOutcome, type JobPayload, type StepSpec } from "../protocol/index.ts";
import { sandboxLabels, stepScript, type Runtime, type Sandbox, type StepOutcome } from "../runtimes/index.ts";
import { describeStepEnd, overrideByStop, type AttemptResult, type StepLimit, type StopReason } from "./attempt-end.ts";
import { BatchStepError, BatchSteps } from "./batch-steps.ts";
import type { CoordinatorClient, JobClient } from "./client.ts";
import type { ExecutorConfig } from "./config.ts";
import { closeJobEgress, openJobEgress, proxyEnvironment, type EgressHost, type JobEgress } from "./egress.ts";
import { LogShipper, type EntryStream } from "./log-shipper.ts";
import { watchDiskUsage } from "./disk-watch.ts";
import { collectOutputs } from "./outputs.ts";
import { lendPackageCache, type PackageCache } from "./package-cache.ts";
import type { RepoCache } from "./repo-cache.ts";
import { jobDirs, makeJobDirs, prepareWorkspace, WorkspaceRefusal, type JobDirs } from "./workspace.ts";

export type { StopReason } from "./attempt-end.ts";

export interface JobRunDeps {
  client: CoordinatorClient;
  runtime: Runtime;
  config: Readonly<ExecutorConfig>;
  logger: Logger;
  /** Present when the executor gives jobs the internet through its egress gateway. */
  egress?: EgressHost | undefined;
  /** The executor's repository cache, when it keeps one. */
  cache?: RepoCache | undefined;
  /** The executor's npm package cache, when it keeps one (steps with `cache: npm`). */
  packages?: PackageCache | undefined;
  /** Called once the attempt is over and its report made: its slot may take the next job. */
  onEnded?: () => void;
}

export class JobRun {
  readonly job: JobPayload;
  private readonly deps: JobRunDeps;
  private readonly abort = new AbortController();
  private readonly jobClient: JobClient;
  private readonly logger: Logger;
  private readonly shipper: LogShipper;
  private readonly secrets: string[];
  private workspace = "";
  private egress: JobEgress | undefined;
  /** The log of the step running now, for the gateway's refusals. */
  private stepLog: EntryStream | undefined;
  /**
   * The entry reports (starts, finishes, their logs) still in flight. The client applies a job's
   * calls in order, so nothing in the job waits for them; the attempt's end does, after its own
   * report is made.
   */
  private finishing: Promise<void> = Promise.resolve();

  constructor(job: JobPayload, deps: JobRunDeps) {
    this.job = job;
    this.deps = deps;
    this.jobClient = deps.client.forJob(job);
    this.logger = deps.logger.child({ jobId: job.id, attempt: job.attempt });
    this.secrets = [...Object.values(job.spec.secrets), job.token, deps.config.token];
    this.shipper = new LogShipper(this.jobClient, {
      secrets: this.secrets,
      capBytes: deps.config.logCapBytes,
      lingerMs: 20,
      batchBytes: 256 * 1024,
      maxRequestBytes: 4 * 1024 * 1024,
      logger: this.logger,
      onCancel: () => this.stop({ kind: "canceled" }),
      onLeaseLost: () => this.stop({ kind: "lease-lost" }),
    });
  }

  get stopReason(): StopReason | undefined {
    return this.abort.signal.aborted ? (this.abort.signal.reason as StopReason) : undefined;
  }

  stop(reason: StopReason): void {
    if (this.abort.signal.aborted) return;
    this.logger.info("stopping job", { reason: reason.kind });
    this.abort.abort(reason);
  }

  async run(): Promise<void> {
    const { config, runtime } = this.deps;
    const timeoutMs = Math.min(this.job.spec.timeoutMs, config.maxRuntimeMs);
    const timer = setTimeout(() => this.stop({ kind: "job-timeout", ms: timeoutMs }), timeoutMs);
    const dirs = jobDirs(join(config.workspaceRoot, `job-${this.job.id}-${this.job.attempt}-${Math.floor(Math.random() * 0xffffff).toString(16)}`));
    this.workspace = dirs.workspace;
    let sandbox: Sandbox | undefined;
    let result: AttemptResult;
    this.logger.info("job started", { runtime: runtime.name, steps: this.job.spec.steps.length });
    try {
      await this.entry("prepare", async (log) => {
        sandbox = await this.prepare(dirs, log);
      });
      const failure = await this.runSteps(sandbox as Sandbox, dirs);
      await sandbox?.destroy();
      sandbox = undefined;
      if (failure) {
        result = { outcome: "failed", message: failure };
      } else {
        this.throwIfStopped();
        if (this.job.spec.outputs.diff || this.job.spec.outputs.paths.length > 0) {
          await this.entry("finalize", (log) => collectOutputs(this.job, dirs, this.jobClient, log, { hostPath: config.hostPath, secrets: this.secrets }));
        }
        result = { outcome: "completed" };
      }
    } catch (error) {
      result = this.classify(error);
    } finally {
      clearTimeout(timer);
      await sandbox?.destroy().catch((error: unknown) => this.logger.error("sandbox destroy failed", { error: String(error) }));
      await this.closeEgress();
    }
    // Every log tail and entry report is handed to the client before the outcome, which the
    // client applies after them; none of their answers is waited for first, so the outcome (with
    // whatever of them is still pending) can ride on the executor's next dequeue. A report that
    // failed after its retries is logged; the attempt's outcome stands.
    const reported = Promise.all([this.shipper.closeAll(), this.finishing]).catch((error: unknown) => this.logger.warn("a report of this attempt was not recorded", { error: String(error) }));
    const report = this.report(overrideByStop(result, this.stopReason));
    // The slot is free from here; the job dir's removal, which nobody waits for, goes beside the report.
    this.deps.onEnded?.();
    await rm(dirs.root, { recursive: true, force: true }).catch((error: unknown) => this.logger.warn("workspace cleanup failed", { error: String(error) }));
    await Promise.all([report, reported]);
  }

  /**
   * The workspace and the sandbox. They are made side by side (the checkout and the gateway plus
   * sandbox are independent, each some tens of ms) unless the runtime reads the workspace when
   * it makes the sandbox (microvm copies it onto the VM's disk). A sandbox made while the
   * checkout failed is destroyed here.
   */
  private async prepare(dirs: JobDirs, log: EntryStream): Promise<Sandbox> {
    const { config, runtime } = this.deps;
    const workspace = (): Promise<void> =>
      prepareWorkspace(this.job, dirs, this.jobClient, log, { hostPath: config.hostPath, caPath: config.caPath, signal: this.abort.signal, cache: this.deps.cache });
    const sandbox = async (): Promise<Sandbox> => {
      await this.openEgress(dirs, log);
      return this.createSandbox(dirs, log);
    };
    await makeJobDirs(dirs);
    if (runtime.readsWorkspaceAtCreate) {
      await workspace();
      return sandbox();
    }
    const [prepared, made] = await Promise.allSettled([workspace(), sandbox()]);
    if (prepared.status === "fulfilled" && made.status === "fulfilled") return made.value;
    if (made.status === "fulfilled") await made.value.destroy().catch((error: unknown) => this.logger.error("sandbox destroy failed", { error: String(error) }));
    throw prepared.status === "rejected" ? prepared.reason : (made as PromiseRejectedResult).reason;
  }

  private async createSandbox(dirs: JobDirs, log: EntryStream): Promise<Sandbox> {
    const { runtime, config } = this.deps;
    const started = Date.now();
    const sandbox = await runtime.createSandbox(
      {
        jobId: this.job.id,
        attempt: this.job.attempt,
        executorName: config.name,
        workspace: dirs.workspace,
        scratchDir: dirs.scratch,
        resources: this.job.spec.resources,
        labels: sandboxLabels(config.name, this.job.id, this.job.attempt),
        registryAuth: this.job.spec.registryAuth,
        network: this.egress?.network,
        logger: this.logger,
      },
      this.abort.signal,
    );
    log.write(`sandbox ${sandbox.id} ready (runtime ${runtime.name}, isolation ${runtime.isolation}, ${Date.now() - started} ms)\n`);
    return sandbox;
  }

  /** Runs the steps in order; returns a failure message, or undefined when all succeeded. */
  private async runSteps(sandbox: Sandbox, dirs: JobDirs): Promise<string | undefined> {
    // Batch jobs: templated steps, rendered with the results of the steps before (batch-steps.ts).
    const batch = this.job.spec.template ? new BatchSteps(this.job, dirs, { hostPath: this.deps.config.hostPath }) : undefined;
    for (const [index, step] of this.job.spec.steps.entries()) {
      this.throwIfStopped();
      let condition: boolean | BatchStepError;
      try {
        condition = batch?.shouldRun(step) ?? true;
      } catch (error) {
        if (!(error instanceof BatchStepError)) throw error;
        condition = error;
      }
      if (condition === false) {
        await this.jobClient.finishStep(step.key, { exitCode: null, durationMs: 0, state: "skipped", message: "its if: condition is not true" });
        continue;
      }
      const failure = await this.runStep(sandbox, step, batch && { steps: batch, later: this.job.spec.steps.slice(index + 1), error: condition === true ? undefined : condition });
      if (failure) return failure;
    }
    await batch?.upload(this.jobClient, this.secrets);
    return undefined;
  }

  private async runStep(sandbox: Sandbox, template: StepSpec, batch?: { steps: BatchSteps; later: StepSpec[]; error: BatchStepError | undefined }): Promise<string | undefined> {
    this.reportStart(template.key);
    const log = this.shipper.entry(template.key);
    let step = template;
    try {
      if (batch?.error) throw batch.error;
      if (batch) step = await batch.steps.render(template);
    } catch (error) {
      // A condition or template that cannot be evaluated fails the step (and the job): the spec's fault.
      if (!(error instanceof BatchStepError || error instanceof WorkspaceRefusal)) throw error;
      log.write(`[airlock] ${error.message}\n`);
      await log.end();
      await this.jobClient.finishStep(step.key, { exitCode: null, durationMs: 0, state: "failed", message: error.message.slice(0, 4000) });
      return error.message;
    }
    const stepAbort = new AbortController();
    const forward = (): void => stepAbort.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener("abort", forward, { once: true });
    const stepTimeoutMs = step.timeoutMs;
    const timer = stepTimeoutMs ? setTimeout(() => stepAbort.abort({ kind: "step-timeout", ms: stepTimeoutMs } satisfies StepLimit), stepTimeoutMs) : undefined;
    const diskLimit = this.job.spec.resources.diskBytes;
    const diskWatch =
      diskLimit && !this.deps.runtime.enforcesDiskLimit
        ? watchDiskUsage(this.workspace, diskLimit, this.deps.config.hostPath, (usedBytes) =>
            stepAbort.abort({ kind: "disk-limit", limitBytes: diskLimit, usedBytes } satisfies StepLimit),
          )
        : undefined;
    const started = Date.now();
    const env = {
      CI: "true",
      AIRLOCK: "true",
      AIRLOCK_JOB_ID: String(this.job.id),
      AIRLOCK_ATTEMPT: String(this.job.attempt),
      AIRLOCK_STEP: step.key,
      ...(this.egress ? proxyEnvironment() : {}),
      ...step.env,
      ...this.job.spec.secrets,
    };
    this.stepLog = log;
    const packages = step.cache === "npm" && this.deps.packages ? await lendPackageCache(this.deps.packages, this.workspace, this.deps.runtime.isolation === "none", log) : undefined;
    let outcome: StepOutcome;
    try {
      const io = { write: (chunk: Uint8Array, stream: "stdout" | "stderr") => (log.write(chunk), batch?.steps.capture(chunk, stream)) };
      outcome = await sandbox.exec({ step, env: { ...env, ...packages?.env }, script: stepScript(step.commands) }, io, stepAbort.signal);
    } catch (error) {
      // The sandbox broke (not the step): record it on the step, then let the attempt error.
      const message = `sandbox failed to run step ${step.key}: ${coerceError(error).message}`;
      log.write(`\n[airlock] ${message}\n`);
      await log.end();
      await this.jobClient.finishStep(step.key, { exitCode: null, durationMs: Date.now() - started, state: "failed", message }).catch(
        () => undefined,
      );
      throw new SandboxError(message, { cause: error });
    } finally {
      clearTimeout(timer);
      diskWatch?.stop();
      this.abort.signal.removeEventListener("abort", forward);
      this.stepLog = undefined;
    }
    const egress = this.egress?.stepSummary();
    if (egress) log.write(`\n[airlock] ${egress}\n`);
    await packages?.end(outcome.exitCode === 0 && !stepAbort.signal.aborted);
    const durationMs = Date.now() - started;
    let ok = outcome.exitCode === 0 && !stepAbort.signal.aborted;
    let message = ok ? undefined : describeStepEnd(step, outcome, stepAbort.signal.reason as StopReason | StepLimit | undefined);
    if (ok && batch) {
      try {
        await batch.steps.finish(step, outcome.exitCode, batch.later);
      } catch (error) {
        if (!(error instanceof BatchStepError)) throw error;
        ok = false;
        message = error.message;
      }
    }
    if (message) log.write(`\n[airlock] ${message}\n`);
    // Not waited for: the client applies the log before the finish, and the attempt's end waits.
    const logged = log.end();
    const finished = this.jobClient.finishStep(step.key, { exitCode: outcome.exitCode, durationMs, state: ok ? "completed" : "failed", ...(message ? { message } : {}) });
    this.track(
      logged,
      finished.catch((error: unknown) => {
        if (!(error instanceof LeaseLostError)) throw error;
      }),
    );
    return message;
  }

  /**
   * Reports an entry's start without waiting for the answer (nothing in the job depends on it; the
   * coordinator gets it before anything later of the job). A start refused because the attempt is
   * no longer ours stops the job; any other failure surfaces when the attempt's end waits for it.
   */
  private reportStart(key: string): void {
    const started = this.jobClient.startStep(key).catch((error: unknown) => {
      if (!(error instanceof LeaseLostError)) throw error;
      this.stop({ kind: "lease-lost" });
    });
    this.track(started);
  }

  /**
   * Adds reports in flight to `finishing`, which the attempt's end waits for. It is marked handled
   * at once: a failure is seen there, not as an unhandled rejection while a step runs.
   */
  private track(...reports: Promise<unknown>[]): void {
    const next = Promise.all([this.finishing, ...reports]).then(() => undefined);
    next.catch(() => undefined);
    this.finishing = next;
  }

  private async openEgress(dirs: JobDirs, log: EntryStream): Promise<void> {
    this.egress = await openJobEgress(this.job, this.deps, join(dirs.root, "net"), log, this.logger, (line) => this.stepLog?.write(`\n[airlock] ${line}\n`));
  }

  private async closeEgress(): Promise<void> {
    const egress = this.egress;
    this.egress = undefined;
    if (egress) await closeJobEgress(egress, this.jobClient, this.logger, this.stopReason?.kind !== "lease-lost");
  }

  /**
   * Runs one executor-owned log entry (prepare, finalize) with start/finish reports around it. The
   * work begins while the start report travels; a failed start (the lease is gone) wins over the
   * work's own result.
   */
  private async entry(key: string, body: (log: EntryStream) => Promise<void>): Promise<void> {
    this.reportStart(key);
    const log = this.shipper.entry(key);
    const started = Date.now();
    let failed: Error | undefined;
    try {
      await body(log);
    } catch (error) {
      failed = coerceError(error);
      log.write(`\n[airlock] ${key} failed: ${failed.message}\n`);
      throw error;
    } finally {
      const logged = log.end();
      const result = { exitCode: failed ? 1 : 0, durationMs: Date.now() - started, state: failed ? ("failed" as const) : ("completed" as const), ...(failed ? { message: failed.message.slice(0, 4000) } : {}) };
      const finished = this.jobClient.finishStep(key, result).catch((error: unknown) =>
        this.logger.warn(`${key} finish not recorded`, { error: String(error) }),
      );
      this.track(logged, finished);
    }
  }

  private throwIfStopped(): void {
    if (this.abort.signal.aborted) throw new Error("stopped");
  }

  private classify(error: unknown): { outcome: AttemptOutcome; message: string } {
    const failure = coerceError(error);
    if (failure instanceof WorkspaceRefusal || failure instanceof StepFailedError) return { outcome: "failed", message: failure.message };
    if (failure instanceof LeaseLostError) this.stop({ kind: "lease-lost" });
    this.logger.error("job errored", { error: failure.message });
    return { outcome: "errored", message: failure.message };
  }

  private async report(result: AttemptResult | undefined): Promise<void> {
    if (!result) {
      this.logger.warn("attempt abandoned: its lease is gone");
      return;
    }
    try {
      await this.jobClient.finish(result.outcome, result.message);
      this.logger.info("job finished", { outcome: result.outcome, message: result.message, logs: this.shipper.stats });
    } catch (error) {
      this.logger.warn("job outcome not recorded", { outcome: result.outcome, error: String(error) });
    }
  }
}
