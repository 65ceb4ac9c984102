/** A client of the user API, for the CLI, the demo, tests and benchmarks. */
import { readFileSync } from "node:fs";
import { TextDecoder } from "node:util";
import { HttpClient, type HttpResponse } from "../common/http-client.ts";
import { IndexPlanResponse, IndexPolicyResponse, IndexPolicyView, IndexView, RepositorySyncResponse, type IndexPolicyRequest } from "../protocol/indexing.ts";
import { ApplyResponse, BatchView, ResolvedBatch, type BatchSummary, type BatchUpload } from "../protocol/batch.ts";
import {
  fromErrorBody,
  JobView,
  type ExecutorView,
  type JobSummary,
  type ListJobsQuery,
  type QueueView,
  type RepositoryView,
} from "../protocol/index.ts";

export interface ServerEvent {
  event: string;
  data: string;
}

/** Parses a text/event-stream body into events. */
export async function* parseEventStream(body: AsyncIterable<Uint8Array>): AsyncIterable<ServerEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length > 0) yield { event, data: data.join("\n") };
    }
  }
}

export class ApiClient {
  readonly url: string;
  private readonly token: string;
  private readonly http: HttpClient;

  constructor(options: { url: string; token: string; caPath?: string | undefined }) {
    this.url = options.url.replace(/\/+$/, "");
    this.token = options.token;
    this.http = new HttpClient({ ca: options.caPath ? readFileSync(options.caPath) : undefined });
  }

  private async raw(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<HttpResponse> {
    const response = await this.http.request({
      method,
      url: `${this.url}${path}`,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal ? { signal } : {}),
    });
    if (response.status >= 400) {
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      throw fromErrorBody(response.status, parsed);
    }
    return response;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.raw(method, path, body);
    return JSON.parse(await response.text()) as T;
  }

  async submit(spec: unknown): Promise<JobView> {
    return JobView.parse(await this.json("POST", "/api/jobs", spec));
  }

  async listJobs(query: Partial<ListJobsQuery> = {}): Promise<JobSummary[]> {
    const params = new URLSearchParams(Object.entries(query).filter(([, value]) => value !== undefined).map(([key, value]): [string, string] => [key, String(value)]));
    return (await this.json<{ jobs: JobSummary[] }>("GET", `/api/jobs?${params.toString()}`)).jobs;
  }

  async getJob(id: number): Promise<JobView> {
    return JobView.parse(await this.json("GET", `/api/jobs/${id}`));
  }

  async cancel(id: number): Promise<JobView> {
    return JobView.parse(await this.json("POST", `/api/jobs/${id}/cancel`));
  }

  async readLog(id: number, key: string, offset = 0): Promise<Buffer> {
    const response = await this.raw("GET", `/api/jobs/${id}/logs/${encodeURIComponent(key)}?offset=${offset}`);
    return response.bytes();
  }

  async artifact(id: number, name: string): Promise<AsyncIterable<Uint8Array>> {
    const response = await this.raw("GET", `/api/jobs/${id}/artifacts/${name.split("/").map(encodeURIComponent).join("/")}`);
    return response.stream;
  }

  async artifactBytes(id: number, name: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of await this.artifact(id, name)) parts.push(Buffer.from(chunk));
    return Buffer.concat(parts);
  }

  async *events(id: number, options: { from?: string; signal?: AbortSignal } = {}): AsyncIterable<ServerEvent> {
    const query = options.from ? `?from=${encodeURIComponent(options.from)}` : "";
    const response = await this.raw("GET", `/api/jobs/${id}/events${query}`, undefined, options.signal);
    yield* parseEventStream(response.stream);
  }

  async executors(): Promise<ExecutorView[]> {
    return (await this.json<{ executors: ExecutorView[] }>("GET", "/api/executors")).executors;
  }

  async queues(): Promise<QueueView[]> {
    return (await this.json<{ queues: QueueView[] }>("GET", "/api/queues")).queues;
  }

  async addRepository(name: string, source: string): Promise<RepositoryView> {
    return this.json("POST", "/api/repositories", { name, source });
  }

  async repositories(): Promise<RepositoryView[]> {
    return (await this.json<{ repositories: RepositoryView[] }>("GET", "/api/repositories")).repositories;
  }

  // Batches (routes listed in src/protocol/batch.ts)

  /** A new version of the batch in `specText` (its YAML), jobs queued. */
  async previewBatch(specText: string): Promise<BatchView> {
    return BatchView.parse(await this.json("POST", "/api/batches", { spec: specText }));
  }

  /** What a preview would run, stored nowhere (the local mode runs these job specs). */
  async resolveBatch(specText: string): Promise<ResolvedBatch> {
    return ResolvedBatch.parse(await this.json("POST", "/api/batches/resolve", { spec: specText }));
  }

  async uploadBatch(upload: BatchUpload): Promise<BatchView> {
    return BatchView.parse(await this.json("POST", "/api/batches/upload", upload));
  }

  async listBatches(): Promise<BatchSummary[]> {
    return (await this.json<{ batches: BatchSummary[] }>("GET", "/api/batches")).batches;
  }

  async getBatch(name: string, version?: number): Promise<BatchView> {
    return BatchView.parse(await this.json("GET", `/api/batches/${encodeURIComponent(name)}${version ? `?version=${version}` : ""}`));
  }

  private batchQuery(options: { repository?: string | undefined; workspace?: string | undefined; version?: number | undefined }): string {
    const params = new URLSearchParams();
    if (options.repository !== undefined) params.set("repository", options.repository);
    if (options.workspace !== undefined) params.set("workspace", options.workspace);
    if (options.version !== undefined) params.set("version", String(options.version));
    const query = params.toString();
    return query ? `?${query}` : "";
  }

  /** The combined diff, or one repository's (or workspace's). */
  async batchDiff(name: string, options: { repository?: string | undefined; workspace?: string | undefined; version?: number | undefined } = {}): Promise<string> {
    return (await this.raw("GET", `/api/batches/${encodeURIComponent(name)}/diff${this.batchQuery(options)}`)).text();
  }

  async batchLogs(name: string, options: { repository: string; workspace?: string | undefined; version?: number | undefined }): Promise<string> {
    return (await this.raw("GET", `/api/batches/${encodeURIComponent(name)}/logs${this.batchQuery(options)}`)).text();
  }

  async retryBatch(name: string, options: { failed?: boolean } = {}): Promise<BatchView> {
    return BatchView.parse(await this.json("POST", `/api/batches/${encodeURIComponent(name)}/retry`, { failed: Boolean(options.failed) }));
  }

  async cancelBatch(name: string): Promise<BatchView> {
    return BatchView.parse(await this.json("POST", `/api/batches/${encodeURIComponent(name)}/cancel`));
  }

  async applyBatch(name: string, options: { repositories?: string[] | undefined; version?: number | undefined } = {}): Promise<ApplyResponse> {
    const body = { ...(options.repositories ? { repositories: options.repositories } : {}), ...(options.version ? { version: options.version } : {}) };
    return ApplyResponse.parse(await this.json("POST", `/api/batches/${encodeURIComponent(name)}/apply`, body));
  }

  // Indexes (routes listed in src/protocol/indexing.ts)

  async index(request: { repository: string; commit?: string | undefined; queue?: string | undefined; dryRun?: boolean | undefined }): Promise<IndexPlanResponse> {
    const body = Object.fromEntries(Object.entries(request).filter(([, value]) => value !== undefined));
    return IndexPlanResponse.parse(await this.json("POST", "/api/indexes", body));
  }

  async listIndexes(query: { repository?: string | undefined; commit?: string | undefined } = {}): Promise<IndexView[]> {
    const params = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    return IndexView.array().parse((await this.json<{ indexes: unknown }>("GET", `/api/indexes?${params.toString()}`)).indexes);
  }

  async getIndex(id: number): Promise<IndexView> {
    return IndexView.parse(await this.json("GET", `/api/indexes/${id}`));
  }

  async indexFile(id: number): Promise<AsyncIterable<Uint8Array>> {
    return (await this.raw("GET", `/api/indexes/${id}/file`)).stream;
  }

  async indexPolicies(repository?: string): Promise<IndexPolicyView[]> {
    const query = repository === undefined ? "" : `?${new URLSearchParams({ repository }).toString()}`;
    return IndexPolicyView.array().parse((await this.json<{ policies: unknown }>("GET", `/api/index-policies${query}`)).policies);
  }

  async setIndexPolicy(request: IndexPolicyRequest): Promise<IndexPolicyResponse> {
    const body = Object.fromEntries(Object.entries(request).filter(([, value]) => value !== undefined));
    return IndexPolicyResponse.parse(await this.json("PUT", "/api/index-policies", body));
  }

  async syncRepository(repository: string): Promise<RepositorySyncResponse> {
    return RepositorySyncResponse.parse(await this.json("POST", "/api/repositories/sync", { repository }));
  }

  async close(): Promise<void> {
    this.http.close();
  }
}
