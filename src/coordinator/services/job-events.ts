/**
 * Applies a job's batched events (protocol 2, src/protocol/job-events.ts) in order, each through
 * the same service or store call as its single-write route, so fencing (the attempt must be live)
 * and idempotence (a log append at the same offset is stored once) are theirs. The first event
 * that throws stops the rest.
 */
import { PayloadTooLargeError, toErrorBody, type FinishedReport, type FinishedResult, type JobEvent, type JobEventResult } from "../../protocol/index.ts";
import type { AttemptRef } from "../../store/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { toAirlockError } from "../http/errors.ts";

export async function applyJobEvents(ctx: CoordinatorContext, ref: AttemptRef, events: readonly JobEvent[], via: "events" | "dequeue"): Promise<JobEventResult[]> {
  const arrived = ctx.clock.now();
  ctx.metrics.jobEvents.inc({ via }, events.length);
  const results: JobEventResult[] = [];
  for (const event of events) {
    switch (event.type) {
      case "start":
        await ctx.jobs.startEntry(ref, event.key, arrived - (event.agoMs ?? 0));
        results.push({});
        break;
      case "finish": {
        const { type: _type, key, agoMs, ...result } = event;
        await ctx.jobs.finishEntry(ref, key, result, arrived - (agoMs ?? 0));
        results.push({});
        break;
      }
      case "log": {
        const data = Buffer.from(event.data, "base64");
        if (data.byteLength > ctx.config.maxLogChunkBytes) throw new PayloadTooLargeError(`log event for ${event.key} is ${data.byteLength} bytes; the limit is ${ctx.config.maxLogChunkBytes}`);
        results.push(await ctx.store.outputs.appendLog(ref, event.key, event.offset, data, ctx.clock.now()));
        break;
      }
      case "end": {
        const job = await ctx.jobs.finishAttempt(ref, event.outcome, event.message ?? null);
        results.push({ state: job.state });
        break;
      }
    }
  }
  return results;
}

/**
 * The reports a dequeue carried, each on its own: one report's failure (its lease is gone) is its
 * answer and does not stop the others or the claim.
 */
export async function applyFinishedReports(ctx: CoordinatorContext, reports: readonly FinishedReport[]): Promise<FinishedResult[]> {
  const answers: FinishedResult[] = [];
  if (reports.length > 0) ctx.metrics.jobReports.inc({ via: "dequeue" });
  for (const report of reports) {
    try {
      const ref = await ctx.auth.requireJob(report.token, { jobId: report.jobId });
      answers.push({ jobId: report.jobId, results: await applyJobEvents(ctx, ref, report.events, "dequeue") });
      ctx.auth.forgetJob(report.token);
    } catch (error) {
      const failure = toAirlockError(error);
      if (failure.status >= 500) ctx.logger.error("carried report failed", { jobId: report.jobId, error: String(error) });
      answers.push({ jobId: report.jobId, error: toErrorBody(failure).error });
    }
  }
  return answers;
}
