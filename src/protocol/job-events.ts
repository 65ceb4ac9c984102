/**
 * Executor protocol 2: a job's reports travel as an ordered list of events, so the dozen small
 * writes of an attempt (an entry's start and finish, short log appends, the outcome) cost a few
 * requests rather than one each.
 *
 * - `POST /.executors/jobs/:id/events` (job token) applies a `JobEventsRequest` in order and answers
 *   one result per event. The first event that fails stops the rest; the answer is then that
 *   event's error, as for the single-write routes (a lost lease fails them all alike).
 * - A dequeue may carry the final events of attempts that just ended (`finished`, each with its job
 *   token), so an executor whose slot frees reports one job and claims the next in one request.
 *   Such a dequeue is answered `DequeueAnswer`: each report's results or error, and the job.
 *
 * Times: the coordinator stamps an event with its own clock when it arrives, less the event's
 * `agoMs` (how long before the request was sent it happened, on the executor's clock). Durations
 * never depend on the two clocks agreeing.
 */
import { z } from "zod";
import { ErrorBody } from "./errors.ts";
import { AttemptOutcome } from "./job.ts";
import { DequeueRequest, FinishRequest, JobPayload, StepFinishRequest } from "./executor-api.ts";

export const EntryKey = z.string().min(1).max(64);
const AgoMs = z.number().int().min(0).max(600_000).optional();

/** Most events in one request, and most attempts reported by one dequeue. */
export const MAX_EVENTS = 256;
export const MAX_FINISHED = 64;

export const JobEvent = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("start"), key: EntryKey, agoMs: AgoMs }),
  StepFinishRequest.extend({ type: z.literal("finish"), key: EntryKey, agoMs: AgoMs }),
  /** Log bytes at `offset` of the entry's log, base64; the same bytes at the same offset are stored once. */
  z.strictObject({ type: z.literal("log"), key: EntryKey, offset: z.number().int().min(0), data: z.base64() }),
  /** How the attempt ended; nothing may follow it. */
  FinishRequest.extend({ type: z.literal("end"), outcome: AttemptOutcome }),
]);
export type JobEvent = z.infer<typeof JobEvent>;

const EventList = z
  .array(JobEvent)
  .min(1)
  .max(MAX_EVENTS)
  .refine((events) => events.findIndex((event) => event.type === "end") === (events.at(-1)?.type === "end" ? events.length - 1 : -1), "an end event must be the last one");

export const JobEventsRequest = z.strictObject({ events: EventList });
export type JobEventsRequest = z.infer<typeof JobEventsRequest>;

/** Per event: a log append's stored size and cancel flag; the job's state after an end; else nothing. */
export const JobEventResult = z.union([z.object({ size: z.number().int(), cancel: z.boolean() }), z.object({ state: z.string() }), z.object({})]);
export type JobEventResult = z.infer<typeof JobEventResult>;

export const JobEventsResponse = z.object({ results: z.array(JobEventResult) });
export type JobEventsResponse = z.infer<typeof JobEventsResponse>;

/** The last events of an ended attempt, carried by a dequeue (they end with an `end` event). */
export const FinishedReport = z.strictObject({
  jobId: z.number().int().positive(),
  token: z.string().min(1).max(200),
  events: EventList.refine((events) => events.at(-1)?.type === "end", "a carried report ends with its end event"),
});
export type FinishedReport = z.infer<typeof FinishedReport>;

export const FinishedResult = z.union([
  z.object({ jobId: z.number().int(), results: z.array(JobEventResult) }),
  z.object({ jobId: z.number().int(), error: ErrorBody.shape.error }),
]);
export type FinishedResult = z.infer<typeof FinishedResult>;

/** A dequeue, with the reports of attempts that ended since the last one (protocol 2). */
export const DequeueWithReports = DequeueRequest.extend({ finished: z.array(FinishedReport).max(MAX_FINISHED).optional() });
export type DequeueWithReports = z.infer<typeof DequeueWithReports>;

/** The answer to a dequeue that carried `finished`: always 200, the job or null. */
export const DequeueAnswer = z.object({ finished: z.array(FinishedResult), job: JobPayload.nullable() });
export type DequeueAnswer = z.infer<typeof DequeueAnswer>;
