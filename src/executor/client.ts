/**
 * How the executor talks to coordinators: the `CoordinatorClient` seam (a fake stands in for it in
 * poll-loop unit tests) and its HTTP implementation.
 *
 * Several coordinator URLs may be given; the client sticks to one and moves to the next when a
 * request cannot reach it (connection refused, reset, timeout). HTTP errors are not failovers.
 */
import { readFileSync } from "node:fs";
import { HttpClient, type HttpBody } from "../common/http-client.ts";
import {
  EXECUTOR_AUTH_SCHEME,
  fromErrorBody,
  HeartbeatResponse,
  JobPayload,
  LogAppendResponse,
  UnavailableError,
  type AttemptOutcome,
  type DequeueRequest,
  type HeartbeatRequest,
  type StepFinishRequest,
} from "../protocol/index.ts";

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
}

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

  constructor(options: HttpClientOptions) {
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

  async dequeue(body: DequeueRequest, signal: AbortSignal): Promise<JobPayload | undefined> {
    const response = await this.json("POST", "/.executors/dequeue", this.executorAuth, body, signal);
    return response.status === 204 ? undefined : JobPayload.parse(response.body);
  }

  async heartbeat(body: HeartbeatRequest): Promise<HeartbeatResponse> {
    const response = await this.json("POST", "/.executors/heartbeat", this.executorAuth, body);
    return HeartbeatResponse.parse(response.body);
  }

  forJob(job: JobPayload): JobClient {
    const auth = `Bearer ${job.token}`;
    const prefix = `/.executors/jobs/${job.id}`;
    return {
      appendLog: async (key, offset, data) => {
        const response = await this.call("POST", `${prefix}/logs/${encodeURIComponent(key)}?offset=${offset}`, {
          auth,
          body: data,
          contentType: "application/octet-stream",
        });
        return LogAppendResponse.parse(response.body);
      },
      startStep: async (key) => {
        await this.json("POST", `${prefix}/steps/${encodeURIComponent(key)}/start`, auth, {});
      },
      finishStep: async (key, result) => {
        await this.json("POST", `${prefix}/steps/${encodeURIComponent(key)}/finish`, auth, result);
      },
      uploadArtifact: async (name, body) => {
        await this.call("PUT", `${prefix}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`, {
          auth,
          body,
          contentType: "application/octet-stream",
        });
      },
      finish: async (outcome, message) => {
        const route = outcome === "completed" ? "complete" : outcome === "failed" ? "fail" : "error";
        await this.json("POST", `${prefix}/${route}`, auth, message === undefined ? {} : { message: message.slice(0, 16_000) });
      },
      gitRemote: () => ({ url: `${this.currentUrl}${job.repository?.gitPath ?? ""}`, authHeader: `Authorization: ${auth}` }),
    };
  }

  async close(): Promise<void> {
    this.http.close();
  }
}
