/**
 * A small HTTP(S) client on node:http with keep-alive, for the executor and the CLI. It loads far
 * less than a full client library, which matters for the executor's idle memory; it verifies
 * https certificates against the system CAs or a given private CA.
 */
import { createRequire } from "node:module";
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import type * as Https from "node:https";
import { Readable } from "node:stream";

// node:https (and with it TLS and OpenSSL) is loaded only when an https URL is used: an executor
// talking plain http to a local coordinator stays smaller.
const load = createRequire(import.meta.url);

export type HttpBody = string | Uint8Array | AsyncIterable<Uint8Array>;

export interface HttpRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: HttpBody;
  signal?: AbortSignal;
  /** Fail if no response headers arrive within this time. */
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as a stream; read it, or call one of the helpers below, exactly once. */
  stream: IncomingMessage;
  text(): Promise<string>;
  bytes(): Promise<Buffer>;
  /** Discards the body so the connection can be reused. */
  dump(): void;
}

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export class HttpClient {
  private readonly http = new HttpAgent({ keepAlive: true, keepAliveMsecs: 10_000 });
  private httpsModule: typeof Https | undefined;
  private httpsAgent: Https.Agent | undefined;
  private readonly ca: Buffer | undefined;

  constructor(options: { ca?: Buffer | undefined } = {}) {
    this.ca = options.ca;
  }

  private https(): { module: typeof Https; agent: Https.Agent } {
    this.httpsModule ??= load("node:https") as typeof Https;
    this.httpsAgent ??= new this.httpsModule.Agent({ keepAlive: true, keepAliveMsecs: 10_000, ...(this.ca ? { ca: this.ca } : {}) });
    return { module: this.httpsModule, agent: this.httpsAgent };
  }

  request(options: HttpRequest): Promise<HttpResponse> {
    const url = new URL(options.url);
    const secure = url.protocol === "https:" ? this.https() : undefined;
    const send = secure ? secure.module.request : httpRequest;
    const body = options.body;
    const headers: Record<string, string> = { ...options.headers };
    if (typeof body === "string" || body instanceof Uint8Array) headers["content-length"] = String(Buffer.byteLength(body));
    return new Promise((resolve, reject) => {
      const request = send(
        url,
        { method: options.method, headers, agent: secure ? secure.agent : this.http, ...(options.signal ? { signal: options.signal } : {}) },
        (response) => {
          if (timer) clearTimeout(timer);
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            stream: response,
            text: async () => (await readAll(response)).toString("utf8"),
            bytes: () => readAll(response),
            dump: () => {
              response.resume();
            },
          });
        },
      );
      const timer = options.timeoutMs
        ? setTimeout(() => request.destroy(Object.assign(new Error(`no response within ${options.timeoutMs} ms`), { code: "ETIMEDOUT" })), options.timeoutMs)
        : undefined;
      request.on("error", (error) => {
        if (timer) clearTimeout(timer);
        reject(error);
      });
      if (body === undefined || typeof body === "string" || body instanceof Uint8Array) {
        request.end(body);
      } else {
        Readable.from(body, { objectMode: false })
          .on("error", (error) => request.destroy(error))
          .pipe(request);
      }
    });
  }

  close(): void {
    this.http.destroy();
    this.httpsAgent?.destroy();
  }
}
