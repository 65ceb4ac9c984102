/**
 * How the executor talks to coordinators: the `CoordinatorClient` seam (a fake stands in for it in
 * poll-loop unit tests) and its HTTP implementation.
 *
 * Several coordinator URLs may be given; the client sticks to one and moves to the next when a
 * request cannot reach it (connection refused, reset, timeout). HTTP errors are not failovers.
 */
import { readFileSync } from "node:fs";
import { HttpClient, type HttpBody } from "../common/http-client.ts";
import type { Logger } from "../common/logger.ts";
import {
  DequeueAnswer,
  EXECUTOR_AUTH_SCHEME,
  fromErrorBody,
  HeartbeatResponse,
  JobEventsResponse,
  MAX_FINISHED,
  JobPayload,
  LogAppendResponse,
  UnavailableError,
  type AttemptOutcome,
  type DequeueRequest,
  type HeartbeatRequest,
  type FinishedReport,
  type StepFinishRequest,
} from "../protocol/index.ts";
import { EventQueue } from "./event-queue.ts";

/**
 * The writes of one attempt. Contract: calls are applied in the order they are made, whether or not
 * the earlier ones have been answered, so callers need not wait for one report before the next;
 * the reports (everything but artifacts) are retried through coordinator outages by the client
 * itself, since a caller retrying one would put it after reports made later.
 */
export interface JobClient {
  appendLog(key: string, offset: number, data: Uint8Array): Promise<LogAppendResponse>;
  startStep(key: string): Promise<void>;
  finishStep(key: string, result: StepFinishRequest): Promise<void>;
  uploadArtifact(name: string, body: AsyncIterable<Uint8Array>): Promise<void>;
  finish(outcome: AttemptOutcome, message?: string): Promise<void>;
  /** URL git fetches the job's repository from, and the extra header that authorizes it. */
  gitRemote(): { url: string; authHeader: string };
}

export interface CoordinatorClient {
  authCheck(): Promise<{ version: string; leaseMs: number }>;
  dequeue(body: DequeueRequest, signal: AbortSignal): Promise<JobPayload | undefined>;
  heartbeat(body: HeartbeatRequest): Promise<HeartbeatResponse>;
  forJob(job: JobPayload): JobClient;
  /** The coordinator URL in use now. */
  readonly currentUrl: string;
  close(): Promise<void>;
}

export interface HttpClientOptions {
  urls: string[];
  executorToken: string;
  /** PEM file of a private CA to trust for https coordinators. */
  caPath: string | undefined;
  logger: Logger;
}

/** How long a job's reports may wait to share a request (an entry's log, its finish, the next start). */
const REPORT_LINGER_MS = 10;

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN"]);

function isNetworkError(error: unknown): boolean {
  const candidate = error as { code?: string; message?: string };
  return NETWORK_CODES.has(candidate?.code ?? "") || candidate?.message === "socket hang up";
}

export class HttpCoordinatorClient implements CoordinatorClient {
  private readonly urls: string[];
  private index = 0;
  private readonly http: HttpClient;
  private readonly executorToken: string;
  private readonly logger: Logger;
  /** Job reports whose last event is the attempt's end: the next dequeue may carry them. */
  private readonly ending = new Map<EventQueue, { jobId: number; token: string }>();

  constructor(options: HttpClientOptions) {
    this.logger = options.logger;
    this.urls = options.urls.map((url) => url.replace(/\/+$/, ""));
    this.executorToken = options.executorToken;
    this.http = new HttpClient({ ca: options.caPath ? readFileSync(options.caPath) : undefined });
  }

  get currentUrl(): string {
    return this.urls[this.index] as string;
  }

  /** Sends a request to the current coordinator, failing over to the next URL on network errors. */
  async call(
    method: string,
    path: string,
    options: { auth: string; body?: HttpBody; contentType?: string; signal?: AbortSignal; failover?: boolean },
  ): Promise<{ status: number; body: unknown }> {
    const attempts = options.failover === false ? 1 : this.urls.length;
    let lastError: unknown;
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      const base = this.currentUrl;
      try {
        const response = await this.http.request({
          method,
          url: `${base}${path}`,
          headers: {
            authorization: options.auth,
            ...(options.contentType ? { "content-type": options.contentType } : {}),
          },
          ...(options.body !== undefined ? { body: options.body } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
          timeoutMs: 90_000,
        });
        const text = await response.text();
        const body = text && response.headers["content-type"]?.toString().includes("json") ? (JSON.parse(text) as unknown) : text;
        if (response.status >= 400) throw fromErrorBody(response.status, body);
        return { status: response.status, body };
      } catch (error) {
        if (!isNetworkError(error) || options.signal?.aborted) throw error;
        lastError = error;
        if (typeof options.body === "object" && options.body !== null && Symbol.asyncIterator in options.body) break;
        this.index = (this.index + 1) % this.urls.length;
      }
    }
    throw new UnavailableError(`cannot reach the coordinator at ${this.currentUrl}: ${String((lastError as Error)?.message ?? lastError)}`, { cause: lastError });
  }

  private json(method: string, path: string, auth: string, payload: unknown, signal?: AbortSignal) {
    return this.call(method, path, { auth, body: JSON.stringify(payload ?? {}), contentType: "application/json", ...(signal ? { signal } : {}) });
  }

  private get executorAuth(): string {
    return `${EXECUTOR_AUTH_SCHEME} ${this.executorToken}`;
  }

  /** `protocol` is missing from coordinators older than the protocol range (they speak 1). */
  async authCheck(): Promise<{ version: string; leaseMs: number; protocol?: { min: number; max: number } }> {
    const response = await this.call("GET", "/.executors/auth-check", { auth: this.executorAuth });
    return response.body as { version: string; leaseMs: number; protocol?: { min: number; max: number } };
  }

  /**
   * Claims a job. The final reports of attempts that just ended ride along (protocol 2): the
   * dequeue then does not wait, so their answers come back at once. Reports it could not deliver
   * go back to their own queues, which send them themselves.
   */
  async dequeue(body: DequeueRequest, signal: AbortSignal): Promise<JobPayload | undefined> {
    const carried = this.takeEnding();
    if (carried.length === 0) {
      const response = await this.json("POST", "/.executors/dequeue", this.executorAuth, body, signal);
      return response.status === 204 ? undefined : JobPayload.parse(response.body);
    }
    const finished: FinishedReport[] = carried.map((report) => ({ jobId: report.jobId, token: report.token, events: report.events }));
    let answer: DequeueAnswer;
    try {
      const response = await this.call("POST", "/.executors/dequeue", {
        auth: this.executorAuth,
        body: JSON.stringify({ ...body, waitMs: 0, finished }),
        contentType: "application/json",
        // Not aborted by a drain: it does not wait, and an abort would leave its reports in doubt.
      });
      answer = DequeueAnswer.parse(response.body);
    } catch (error) {
      for (const report of carried) report.putBack();
      throw error;
    }
    for (const report of carried) {
      const result = answer.finished.find((entry) => entry.jobId === report.jobId);
      if (result) report.settle(result);
      else report.putBack();
    }
    return answer.job ?? undefined;
  }

  private takeEnding() {
    const taken = [];
    for (const [queue, job] of this.ending) {
      if (taken.length >= MAX_FINISHED) break;
      this.ending.delete(queue);
      const final = queue.takeFinal();
      if (final) taken.push({ ...job, ...final });
    }
    return taken;
  }

  async heartbeat(body: HeartbeatRequest): Promise<HeartbeatResponse> {
    const response = await this.json("POST", "/.executors/heartbeat", this.executorAuth, body);
    return HeartbeatResponse.parse(response.body);
  }

  forJob(job: JobPayload): JobClient {
    const auth = `Bearer ${job.token}`;
    const prefix = `/.executors/jobs/${job.id}`;
    const queue = new EventQueue({
      send: async (events) => JobEventsResponse.parse((await this.json("POST", `${prefix}/events`, auth, { events })).body).results,
      logger: this.logger.child({ jobId: job.id, attempt: job.attempt }),
      giveUpMs: 10 * 60_000,
      lingerMs: REPORT_LINGER_MS,
      onEnd: (ending) => this.ending.set(ending, { jobId: job.id, token: job.token }),
    });
    return {
      appendLog: async (key, offset, data) => LogAppendResponse.parse(await queue.push({ type: "log", key, offset, data: Buffer.from(data).toString("base64") })),
      startStep: async (key) => {
        await queue.push({ type: "start", key });
      },
      finishStep: async (key, result) => {
        await queue.push({ type: "finish", key, ...result });
      },
      uploadArtifact: async (name, body) => {
        await this.call("PUT", `${prefix}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`, {
          auth,
          body,
          contentType: "application/octet-stream",
        });
      },
      finish: async (outcome, message) => {
        await queue.push({ type: "end", outcome, ...(message === undefined ? {} : { message: message.slice(0, 16_000) }) });
      },
      gitRemote: () => ({ url: `${this.currentUrl}${job.repository?.gitPath ?? ""}`, authHeader: `Authorization: ${auth}` }),
    };
  }

  async close(): Promise<void> {
    this.http.close();
  }
}
