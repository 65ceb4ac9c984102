/** The executor API: dequeue (long poll), heartbeat, and the job-scoped writes of one attempt. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { pipeline, Transform } from "node:stream";
import { z } from "zod";
import {
  AIRLOCK_VERSION,
  ArtifactName,
  DequeueWithReports,
  FinishRequest,
  JobEventsRequest,
  HeartbeatRequest,
  IncompatibleProtocolError,
  MIN_EXECUTOR_PROTOCOL,
  PayloadTooLargeError,
  PROTOCOL_VERSION,
  protocolMismatch,
  StepFinishRequest,
  validationErrorFrom,
  type AttemptOutcome,
  type DequeueAnswer,
  type DequeueRequest,
  type HeartbeatResponse,
  type JobEventsResponse,
  type JobPayload,
  type LogAppendResponse,
} from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { SecretKeyError } from "../secrets/keyring.ts";
import { applyFinishedReports, applyJobEvents } from "../services/job-events.ts";

const JobParams = z.object({ id: z.coerce.number().int().positive() });
const EntryParams = JobParams.extend({ key: z.string().min(1).max(64) });
const AppendQuery = z.object({ offset: z.coerce.number().int().min(0) });

export function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationErrorFrom(result.error, what);
  return result.data;
}

/** Aborts when the client goes away, so a held dequeue or stream stops working for nobody. */
export function clientGone(reply: FastifyReply, shutdown: AbortSignal): AbortSignal {
  const controller = new AbortController();
  reply.raw.on("close", () => controller.abort());
  return AbortSignal.any([controller.signal, shutdown]);
}

/** Refuses an executor this coordinator cannot serve, before anything of it is stored. */
function requireCompatible(ctx: CoordinatorContext, executor: Parameters<typeof protocolMismatch>[0]): void {
  const mismatch = protocolMismatch(executor);
  if (!mismatch) return;
  ctx.logger.warn("executor refused", { executor: executor.executorName, reason: mismatch });
  throw new IncompatibleProtocolError(mismatch);
}

export function registerExecutorRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const { auth, store, clock, jobs, config } = ctx;

  app.get("/.executors/auth-check", async (request) => {
    auth.requireExecutor(request);
    return { ok: true, version: AIRLOCK_VERSION, protocol: { min: MIN_EXECUTOR_PROTOCOL, max: PROTOCOL_VERSION }, leaseMs: config.leaseMs };
  });

  app.post("/.executors/dequeue", async (request, reply) => {
    auth.requireExecutor(request);
    const body = parse(DequeueWithReports, request.body, "invalid dequeue request");
    requireCompatible(ctx, body);
    if (!body.finished) return (await claimForExecutor(ctx, body, reply)) ?? reply.status(204).send();
    // The reports (of other jobs) and the claim are independent: side by side, the request costs
    // one store round trip of latency rather than two. A claim that fails after the reports were
    // applied answers no job, so their answers are not lost; the executor simply asks again.
    const [finished, claimed] = await Promise.all([
      applyFinishedReports(ctx, body.finished),
      claimForExecutor(ctx, body, reply).catch((error: unknown) => {
        ctx.logger.warn("claim failed on a dequeue that carried reports", { executor: body.executorName, error: String(error) });
        return undefined;
      }),
    ]);
    return { finished, job: claimed ?? null } satisfies DequeueAnswer;
  });

  app.post("/.executors/heartbeat", async (request): Promise<HeartbeatResponse> => {
    auth.requireExecutor(request);
    const body = parse(HeartbeatRequest, request.body, "invalid heartbeat");
    requireCompatible(ctx, body);
    return store.jobs.heartbeat(body, body.jobIds, config.leaseMs, clock.now(), body.warmPool ?? null);
  });

  app.post("/.executors/jobs/:id/steps/:key/start", async (request) => {
    const { id, key } = parse(EntryParams, request.params, "invalid path");
    const ref = await auth.requireJob(request, { jobId: id });
    countRouteReport(ctx);
    await jobs.startEntry(ref, key);
    return { ok: true };
  });

  app.post("/.executors/jobs/:id/steps/:key/finish", async (request) => {
    const { id, key } = parse(EntryParams, request.params, "invalid path");
    const ref = await auth.requireJob(request, { jobId: id });
    const body = parse(StepFinishRequest, request.body, "invalid step result");
    countRouteReport(ctx);
    await jobs.finishEntry(ref, key, body);
    return { ok: true };
  });

  app.post("/.executors/jobs/:id/events", { bodyLimit: Math.ceil(config.maxLogChunkBytes * 1.4) + 1024 * 1024 }, async (request): Promise<JobEventsResponse> => {
    const { id } = parse(JobParams, request.params, "invalid path");
    const ref = await auth.requireJob(request, { jobId: id });
    const body = parse(JobEventsRequest, request.body, "invalid job events");
    ctx.metrics.jobReports.inc({ via: "events" });
    const results = await applyJobEvents(ctx, ref, body.events, "events");
    if (body.events.at(-1)?.type === "end") auth.forgetJob(request);
    return { results };
  });

  const outcomes: [string, AttemptOutcome][] = [
    ["complete", "completed"],
    ["fail", "failed"],
    ["error", "errored"],
  ];
  for (const [route, outcome] of outcomes) {
    app.post(`/.executors/jobs/:id/${route}`, async (request) => {
      const { id } = parse(JobParams, request.params, "invalid path");
      const ref = await auth.requireJob(request, { jobId: id });
      const body = parse(FinishRequest, request.body ?? {}, "invalid finish request");
      countRouteReport(ctx);
      const job = await jobs.finishAttempt(ref, outcome, body.message ?? null);
      auth.forgetJob(request);
      return { state: job.state };
    });
  }

  // Raw bodies: log bytes are buffered (bounded), artifacts stream straight into the store.
  app.register(async (scoped) => {
    scoped.addContentTypeParser("application/octet-stream", { parseAs: "buffer", bodyLimit: config.maxLogChunkBytes }, (_request, body, done) => {
      done(null, body);
    });
    scoped.post("/.executors/jobs/:id/logs/:key", async (request): Promise<LogAppendResponse> => {
      const { id, key } = parse(EntryParams, request.params, "invalid path");
      const { offset } = parse(AppendQuery, request.query, "invalid query");
      const ref = await auth.requireJob(request, { jobId: id });
      const data = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      countRouteReport(ctx);
      return ctx.store.outputs.appendLog(ref, key, offset, data, clock.now());
    });
  });

  app.register(async (scoped) => {
    scoped.addContentTypeParser("application/octet-stream", (_request, payload, done) => {
      done(null, payload);
    });
    scoped.put("/.executors/jobs/:id/artifacts/*", async (request: FastifyRequest) => {
      const { id } = parse(JobParams, request.params, "invalid path");
      const name = parse(ArtifactName, (request.params as Record<string, string>)["*"], "invalid artifact name");
      const ref = await auth.requireJob(request, { jobId: id });
      const body = request.body as NodeJS.ReadableStream | undefined;
      if (!body || typeof (body as { pipe?: unknown }).pipe !== "function") return ctx.store.outputs.putArtifact(ref, name, emptyStream(), clock.now());
      const limited = byteLimit(config.maxArtifactBytes);
      pipeline(body, limited, () => undefined);
      return ctx.store.outputs.putArtifact(ref, name, limited, clock.now());
    });
  });
}

/**
 * Claims a job for the executor (waiting as its request allows) and makes its payload; undefined
 * when there is none to hand over.
 */
async function claimForExecutor(ctx: CoordinatorContext, body: DequeueRequest, reply: FastifyReply): Promise<JobPayload | undefined> {
  const { auth, clock, jobs, config } = ctx;
  const waitMs = Math.min(body.waitMs, config.maxDequeueWaitMs);
  // Only a held poll needs to notice the client leaving; a claim without a wait is over at once,
  // and the abort signal pair (with the DOMException its abort makes) showed in the profile.
  const signal = waitMs > 0 ? clientGone(reply, ctx.shutdown) : ctx.shutdown;
  const claimed = await ctx.dispatcher.dequeue(body, waitMs, signal);
  if (!claimed) return undefined;
  const { job, token, tokenHash } = claimed;
  const ref = { jobId: job.id, attempt: job.attempt, repository: job.repository, executorName: body.executorName };
  auth.rememberJob(tokenHash, ref);
  if (reply.raw.destroyed) {
    // The executor left while we claimed: hand the job back rather than wait out its lease.
    await jobs.finishAttempt(ref, "errored", "executor disconnected before it received the job");
    return undefined;
  }
  let spec;
  try {
    spec = await ctx.secrets.reveal(job);
  } catch (error) {
    if (!(error instanceof SecretKeyError)) throw error;
    // Its secrets do not open here (sealed under a key this coordinator lacks): the attempt ends
    // with the reason, and the executor asks again.
    ctx.logger.warn("job secrets do not open", { jobId: job.id, attempt: job.attempt, error: error.message });
    await jobs.finishAttempt(ref, "errored", error.message);
    return undefined;
  }
  ctx.metrics.queueWait.observe({ queue: job.queue }, Math.max(0, (job.startedAt ?? clock.now()) - job.queuedAt) / 1000);
  ctx.logger.info("job dequeued", { jobId: job.id, attempt: job.attempt, executor: body.executorName });
  return {
    id: job.id,
    attempt: job.attempt,
    token,
    queue: job.queue,
    spec,
    repository: job.repository && job.commit ? { name: job.repository, commit: job.commit, gitPath: `/.executors/git/${job.repository}` } : null,
    leaseMs: config.leaseMs,
  };
}

/** A protocol 1 report: one write, one request. */
function countRouteReport(ctx: CoordinatorContext): void {
  ctx.metrics.jobEvents.inc({ via: "route" });
  ctx.metrics.jobReports.inc({ via: "route" });
}

async function* emptyStream(): AsyncIterable<Uint8Array> {}

/** Passes bytes through until `limit`, then fails the stream with a 413. */
function byteLimit(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.byteLength;
      if (seen > limit) callback(new PayloadTooLargeError(`artifact is larger than the limit of ${limit} bytes`));
      else callback(null, chunk);
    },
  });
}
