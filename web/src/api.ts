/**
 * The user API from the browser. Every call carries the API token as a Bearer header (never in
 * a URL); a 401 anywhere signs the session out. Types come from src/protocol (types only, so no
 * validation library is bundled: the coordinator is the one that validates).
 */
import type { ApplyResponse, BatchSummary, BatchView } from "../../src/protocol/batch.ts";
import type { ExecutorView, JobSummary, JobView, QueueHistory, QueueView, RepositoryView } from "../../src/protocol/index.ts";
import type { IndexPolicyView, IndexView } from "../../src/protocol/indexing.ts";
import { readEvents, type ServerEvent } from "./sse.ts";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;

  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export interface JobFilters {
  state?: string | undefined;
  queue?: string | undefined;
  repository?: string | undefined;
  limit?: number | undefined;
  before?: number | undefined;
}

function query(params: Record<string, string | number | undefined>): string {
  const entries = Object.entries(params).filter((entry): entry is [string, string | number] => entry[1] !== undefined && entry[1] !== "");
  return entries.length === 0 ? "" : `?${new URLSearchParams(entries.map(([key, value]) => [key, String(value)])).toString()}`;
}

async function errorFrom(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string; field?: string } };
    if (body.error?.message) return new ApiError(response.status, body.error.code ?? "error", body.error.message, body.error.field);
  } catch {
    // not an error body
  }
  return new ApiError(response.status, response.status === 503 ? "unavailable" : "http", `the coordinator answered HTTP ${response.status}${text && text.length < 200 ? `: ${text}` : ""}`);
}

export class Api {
  private readonly token: string;
  private readonly onUnauthorized: (error: ApiError) => void;

  constructor(token: string, onUnauthorized: (error: ApiError) => void) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  /** One request; non-2xx answers become ApiError (and a 401 also signs out). */
  async request(method: string, path: string, options: { body?: unknown; signal?: AbortSignal | undefined; accept?: string } = {}): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(path, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: options.accept ?? "application/json",
          ...(options.body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        ...(options.signal ? { signal: options.signal } : {}),
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw new ApiError(0, "network", "cannot reach the coordinator (is it running?)");
    }
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async json<T>(method: string, path: string, options: { body?: unknown; signal?: AbortSignal | undefined } = {}): Promise<T> {
    return (await (await this.request(method, path, options)).json()) as T;
  }

  async listJobs(filters: JobFilters, signal?: AbortSignal): Promise<JobSummary[]> {
    return (await this.json<{ jobs: JobSummary[] }>("GET", `/api/jobs${query({ ...filters })}`, { signal })).jobs;
  }

  getJob(id: number, signal?: AbortSignal): Promise<JobView> {
    return this.json("GET", `/api/jobs/${id}`, { signal });
  }

  cancel(id: number): Promise<JobView> {
    return this.json("POST", `/api/jobs/${id}/cancel`);
  }

  submit(spec: unknown): Promise<JobView> {
    return this.json("POST", "/api/jobs", { body: spec });
  }

  async executors(signal?: AbortSignal): Promise<ExecutorView[]> {
    return (await this.json<{ executors: ExecutorView[] }>("GET", "/api/executors", { signal })).executors;
  }

  async queues(signal?: AbortSignal): Promise<QueueView[]> {
    return (await this.json<{ queues: QueueView[] }>("GET", "/api/queues", { signal })).queues;
  }

  queueHistory(window: string, bucket: string, signal?: AbortSignal): Promise<QueueHistory> {
    return this.json("GET", `/api/queues/history${query({ window, bucket })}`, { signal });
  }

  async indexes(signal?: AbortSignal): Promise<IndexView[]> {
    return (await this.json<{ indexes: IndexView[] }>("GET", "/api/indexes?limit=1000", { signal })).indexes;
  }

  async indexPolicies(signal?: AbortSignal): Promise<IndexPolicyView[]> {
    return (await this.json<{ policies: IndexPolicyView[] }>("GET", "/api/index-policies", { signal })).policies;
  }

  async repositories(signal?: AbortSignal): Promise<RepositoryView[]> {
    return (await this.json<{ repositories: RepositoryView[] }>("GET", "/api/repositories", { signal })).repositories;
  }

  /** An artifact's bytes (the diff, an output file); the caller makes a download of it. */
  async artifact(id: number, name: string, signal?: AbortSignal): Promise<Blob> {
    const path = name.split("/").map(encodeURIComponent).join("/");
    return (await this.request("GET", `/api/jobs/${id}/artifacts/${path}`, { signal, accept: "*/*" })).blob();
  }

  /** One log entry in full, as stored (for downloads). */
  async log(id: number, key: string, signal?: AbortSignal): Promise<Blob> {
    return (await this.request("GET", `/api/jobs/${id}/logs/${encodeURIComponent(key)}`, { signal, accept: "*/*" })).blob();
  }

  async listBatches(signal?: AbortSignal): Promise<BatchSummary[]> {
    return (await this.json<{ batches: BatchSummary[] }>("GET", "/api/batches", { signal })).batches;
  }

  /** A batch with one version's entries (the latest unless `version`). */
  getBatch(name: string, version: number | undefined, signal?: AbortSignal): Promise<BatchView> {
    return this.json("GET", `/api/batches/${encodeURIComponent(name)}${query({ version })}`, { signal });
  }

  /** One entry's diff (or, without `repository`, the version's combined diff), as text. */
  async batchDiff(name: string, where: { repository?: string; workspace?: string; version?: number }, signal?: AbortSignal): Promise<string> {
    return (await this.request("GET", `/api/batches/${encodeURIComponent(name)}/diff${query(where)}`, { signal, accept: "text/x-diff, text/plain, */*" })).text();
  }

  /** The logs of one entry's job (each log entry under a "── key ──" header). */
  async batchLogs(name: string, where: { repository: string; workspace?: string; version?: number }, signal?: AbortSignal): Promise<string> {
    return (await this.request("GET", `/api/batches/${encodeURIComponent(name)}/logs${query(where)}`, { signal, accept: "text/plain, */*" })).text();
  }

  /** Commits each completed diff on the changeset branch and pushes it (only `repositories`, when given). */
  applyBatch(name: string, body: { repositories?: string[]; version?: number }): Promise<ApplyResponse> {
    return this.json("POST", `/api/batches/${encodeURIComponent(name)}/apply`, { body });
  }

  /** The job's event stream (job, log, attempt, end), resuming at `from` ("key:offset,..."). */
  async *events(id: number, from: string, signal: AbortSignal): AsyncGenerator<ServerEvent> {
    const response = await this.request("GET", `/api/jobs/${id}/events${query({ from })}`, { signal, accept: "text/event-stream" });
    if (!response.body) throw new ApiError(0, "network", "the event stream has no body");
    yield* readEvents(response.body, signal);
  }
}

/** Saves a blob under `filename` through a short-lived object URL. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  link.rel = "noopener";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
