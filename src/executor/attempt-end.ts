/**
 * How one attempt's pieces end: the reasons it may be stopped for, the message a stopped or failed
 * step gets, how a stop overrides the attempt's outcome, and the retrying of control calls.
 */
import type { Logger } from "../common/logger.ts";
import { AirlockError, formatDuration, formatSize, UnavailableError, type AttemptOutcome, type StepSpec } from "../protocol/index.ts";
import type { StepOutcome } from "../runtimes/index.ts";

export type StopReason = { kind: "canceled" } | { kind: "lease-lost" } | { kind: "job-timeout"; ms: number } | { kind: "shutdown" };

export type StepLimit = { kind: "step-timeout"; ms: number } | { kind: "disk-limit"; limitBytes: number; usedBytes: number };

export interface AttemptResult {
  outcome: AttemptOutcome;
  message?: string;
}

/** A failure worth trying again: the coordinator unreachable or failing (5xx), but not a sandbox error. */
export function retryable(error: unknown): boolean {
  return error instanceof UnavailableError || (error instanceof AirlockError && error.status >= 500 && error.code !== "sandbox");
}

/** Retries a control call (step start/finish, final report) through coordinator outages. */
export async function persist<T>(call: () => Promise<T>, logger: Logger, what: string, giveUpMs = 10 * 60_000): Promise<T> {
  const started = Date.now();
  let delay = 200;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!retryable(error) || Date.now() - started > giveUpMs) throw error;
      logger.warn(`${what} failed; retrying`, { error: String(error) });
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/** Why a step ended without success, in words for its log and the job's failure message. */
export function describeStepEnd(step: StepSpec, outcome: StepOutcome, reason: StopReason | StepLimit | undefined): string {
  if (reason?.kind === "step-timeout") return `step ${step.key} hit its timeout of ${formatDuration(reason.ms)} and was killed`;
  if (reason?.kind === "disk-limit") {
    return `step ${step.key} exceeded the workspace disk limit of ${formatSize(reason.limitBytes)} (${formatSize(reason.usedBytes)} used) and was killed`;
  }
  if (reason?.kind === "job-timeout") return `job hit its timeout of ${formatDuration(reason.ms)}; step ${step.key} was killed`;
  if (reason?.kind === "canceled") return `job canceled; step ${step.key} was killed`;
  if (reason?.kind === "shutdown") return `executor shutting down; step ${step.key} was killed`;
  if (reason?.kind === "lease-lost") return `this attempt lost its lease; step ${step.key} was killed`;
  if (outcome.message) return `step ${step.key}: ${outcome.message}`;
  return `step ${step.key} exited with code ${outcome.exitCode ?? "(none)"}`;
}

/** The report a stop turns the attempt's result into; undefined: no report (the lease is gone). */
export function overrideByStop(result: AttemptResult, reason: StopReason | undefined): AttemptResult | undefined {
  if (!reason) return result;
  switch (reason.kind) {
    case "lease-lost":
      return undefined;
    case "canceled":
      return { outcome: "failed", message: "canceled" };
    case "shutdown":
      return { outcome: "errored", message: "the executor shut down while the job was running" };
    case "job-timeout":
      return { outcome: "failed", message: `job hit its timeout of ${formatDuration(reason.ms)}` };
  }
}
