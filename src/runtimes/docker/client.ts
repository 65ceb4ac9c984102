/**
 * A small client for the Docker Engine API over its unix socket (undici, kept-alive connections).
 * Only the calls the docker and gvisor runtimes need, each one round trip. Paths are pinned to
 * API 1.41 (Engine 20.10), which every later Engine still serves, so no version negotiation is
 * needed before the first call.
 */
import type { Duplex } from "node:stream";
import { Pool } from "undici";
import { SandboxError, UnavailableError, coerceError } from "../../protocol/index.ts";

const API = "/v1.41";

/** The daemon answered with an error status; `httpStatus` is its HTTP status. */
export class DockerApiError extends SandboxError {
  readonly httpStatus: number;
  constructor(httpStatus: number, message: string) {
    super(message);
    this.httpStatus = httpStatus;
  }
}

export interface ContainerSummary {
  Id: string;
  Names?: string[];
  State?: string;
  Labels?: Record<string, string>;
}

export interface ContainerState {
  Status: string;
  Running: boolean;
  OOMKilled: boolean;
  ExitCode: number;
  Error: string;
}

export interface DockerInfo {
  ServerVersion?: string;
  Runtimes?: Record<string, { path?: string; runtimeArgs?: string[] }>;
  DefaultRuntime?: string;
  CgroupDriver?: string;
  CgroupVersion?: string;
}

type Query = Record<string, string | number | boolean | undefined>;

interface CallOptions {
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** Status codes that are not errors (besides 2xx). */
  accept?: number[];
}

/** Parses "unix:///var/run/docker.sock" or a plain path into the socket path. */
export function socketPathOf(host: string): string {
  if (host.startsWith("unix://")) return host.slice("unix://".length);
  if (host.startsWith("/")) return host;
  throw new SandboxError(`docker host "${host}" is not a unix socket (unix:///path or /path); only local sockets are supported`);
}

export class DockerClient {
  readonly socketPath: string;
  private readonly pool: Pool;

  constructor(options: { socketPath: string }) {
    this.socketPath = options.socketPath;
    // Long-running waits and attaches each hold a connection; timeouts are the caller's (signals).
    this.pool = new Pool("http://docker", { connect: { socketPath: options.socketPath }, connections: 64, headersTimeout: 0, bodyTimeout: 0 });
  }

  private path(path: string, query?: Query): string {
    if (!query) return API + path;
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
    const text = params.toString();
    return text ? `${API}${path}?${text}` : API + path;
  }

  /** Sends a request; returns the response once its headers arrived (the body is the caller's). */
  private async send(method: "GET" | "POST" | "DELETE", path: string, options: CallOptions = {}) {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    try {
      return await this.pool.request({
        method,
        path: this.path(path, options.query),
        headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...options.headers },
        body,
        signal: options.signal,
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw this.unreachable(error);
    }
  }

  private async call<T>(method: "GET" | "POST" | "DELETE", path: string, options: CallOptions = {}): Promise<{ status: number; body: T | undefined }> {
    const response = await this.send(method, path, options);
    const text = await response.body.text();
    const ok = (response.statusCode >= 200 && response.statusCode < 300) || options.accept?.includes(response.statusCode);
    if (!ok) throw new DockerApiError(response.statusCode, errorMessage(text, response.statusCode));
    const json = String(response.headers["content-type"] ?? "").includes("json");
    return { status: response.statusCode, body: text && json ? (JSON.parse(text) as T) : undefined };
  }

  unreachable(error: unknown): UnavailableError {
    const cause = coerceError(error);
    const code = (cause as NodeJS.ErrnoException).code;
    const hint =
      code === "EACCES" ? "the executor may not use the socket: run it as root or in the docker group" : "is dockerd running? (start it, or pass --docker-host)";
    return new UnavailableError(`the Docker daemon does not answer at ${this.socketPath} (${code ?? cause.message}): ${hint}`, { cause });
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.call("GET", "/_ping", { signal });
  }

  async version(): Promise<{ Version?: string; ApiVersion?: string }> {
    return (await this.call<{ Version?: string; ApiVersion?: string }>("GET", "/version")).body ?? {};
  }

  async info(): Promise<DockerInfo> {
    return (await this.call<DockerInfo>("GET", "/info")).body ?? {};
  }

  /** Creates a container; a missing image is a DockerApiError with status 404. */
  async createContainer(name: string, config: object, signal?: AbortSignal): Promise<string> {
    const { body } = await this.call<{ Id: string }>("POST", "/containers/create", { query: { name }, body: config, signal });
    if (!body?.Id) throw new SandboxError("the Docker daemon created a container but sent no id");
    return body.Id;
  }

  /** Attaches to stdout and stderr (multiplexed frames) before start, so no output is missed. */
  async attach(id: string): Promise<Duplex> {
    try {
      const { socket } = await this.pool.upgrade({ path: this.path(`/containers/${id}/attach`, { stream: 1, stdout: 1, stderr: 1 }), method: "POST", protocol: "tcp" });
      return socket;
    } catch (error) {
      if (error instanceof Error && /status/i.test(error.message)) throw new DockerApiError(500, `attach to container ${id.slice(0, 12)} failed: ${error.message}`);
      throw this.unreachable(error);
    }
  }

  /**
   * Registers a wait for the container's next exit. The daemon answers the headers once the wait is
   * registered, so after this resolves the container may be started without missing its exit.
   */
  async waitNextExit(id: string): Promise<() => Promise<{ StatusCode: number; Error?: { Message?: string } | null }>> {
    const response = await this.send("POST", `/containers/${id}/wait`, { query: { condition: "next-exit" } });
    if (response.statusCode !== 200) {
      const text = await response.body.text();
      throw new DockerApiError(response.statusCode, errorMessage(text, response.statusCode));
    }
    return async () => JSON.parse(await response.body.text()) as { StatusCode: number; Error?: { Message?: string } | null };
  }

  async start(id: string): Promise<void> {
    await this.call("POST", `/containers/${id}/start`, { accept: [304] });
  }

  async inspect(id: string): Promise<{ State: ContainerState; Config?: { Labels?: Record<string, string> } }> {
    const { body } = await this.call<{ State: ContainerState }>("GET", `/containers/${id}/json`);
    if (!body) throw new SandboxError(`inspect of container ${id.slice(0, 12)} returned nothing`);
    return body;
  }

  /** Kills (when running) and removes a container with its anonymous volumes; gone already is fine. */
  async remove(id: string): Promise<void> {
    await this.call("DELETE", `/containers/${id}`, { query: { force: 1, v: 1 }, accept: [404] });
  }

  async imageExists(image: string): Promise<boolean> {
    const { status } = await this.call("GET", `/images/${encodeURIComponent(image)}/json`, { accept: [404] });
    return status === 200;
  }

  async list(labels: string[]): Promise<ContainerSummary[]> {
    const { body } = await this.call<ContainerSummary[]>("GET", "/containers/json", { query: { all: 1, filters: JSON.stringify({ label: labels }) } });
    return body ?? [];
  }

  /**
   * Pulls an image. The daemon reports failures inside the progress stream with status 200, so
   * the stream is read to its end and its last error (if any) thrown.
   */
  async pull(image: string, tag: string, registryAuth: string | undefined, signal?: AbortSignal): Promise<void> {
    const response = await this.send("POST", "/images/create", {
      query: { fromImage: image, tag },
      headers: registryAuth ? { "x-registry-auth": registryAuth } : {},
      signal,
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) throw new DockerApiError(response.statusCode, errorMessage(text, response.statusCode));
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      let event: { error?: string; errorDetail?: { message?: string } };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        continue;
      }
      if (event.error) throw new DockerApiError(500, event.errorDetail?.message ?? event.error);
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

function errorMessage(text: string, status: number): string {
  try {
    const parsed = JSON.parse(text) as { message?: string };
    if (parsed.message) return parsed.message;
  } catch {
    // not JSON
  }
  return text.trim() || `HTTP ${status}`;
}
