/**
 * An upstream's HTTP/1.x response, relayed to the client's ServerResponse straight from the
 * upstream's read buffer (relay.ts): only the head is parsed; a Content-Length body goes through
 * as it is; a chunked body has only its framing read (the client gets Node's own chunking); a
 * body ending at close is relayed until EOF. Upstream requests carry `Connection: close`, so the
 * upstream socket is destroyed once the body is complete.
 *
 * States: HEAD (bytes gathered, at most 64 KiB, 1xx heads skipped) -> BODY -> DONE; any
 * malformed input, or an EOF before the body is complete, is FAILED: a 502 if nothing was sent
 * to the client yet, else the client's connection is destroyed (a truncated body is never passed
 * off as whole).
 */
import type { ServerResponse } from "node:http";
import type { RelayConsumer } from "./relay.ts";

const MAX_HEAD = 64 * 1024;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOP_BY_HOP = new Set(["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection", "proxy-authenticate", "http2-settings"]);

export type Framing = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" } | { kind: "close" };

export interface ResponseHead {
  status: number;
  reason: string;
  /** Raw name/value pairs to send on (hop-by-hop ones and those Connection names dropped). */
  headers: string[];
  framing: Framing;
}

/** Reads a response head (without its final blank line); throws on anything malformed. */
export function parseResponseHead(text: string, method: string): ResponseHead {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.[01] ([1-9]\d\d)(?: ([^\r\n]*))?$/.exec(lines[0] ?? "");
  if (!status) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const code = Number(status[1]);
  const pairs: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) throw new Error(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    pairs.push([name, line.slice(colon + 1).trim()]);
  }
  const values = (wanted: string): string[] => pairs.filter(([name]) => name.toLowerCase() === wanted).map(([, value]) => value);
  const named = new Set(values("connection").flatMap((value) => value.split(",").map((item) => item.trim().toLowerCase())));
  const codings = values("transfer-encoding").flatMap((value) => value.split(",").map((item) => item.trim().toLowerCase())).filter(Boolean);
  const lengths = [...new Set(values("content-length").flatMap((value) => value.split(",").map((item) => item.trim())))];
  let framing: Framing;
  if (method === "HEAD" || code < 200 || code === 204 || code === 304) framing = { kind: "none" };
  else if (codings.length > 0) framing = codings[codings.length - 1] === "chunked" ? { kind: "chunked" } : { kind: "close" };
  else if (lengths.length > 0) {
    const length = lengths[0] ?? "";
    if (lengths.length > 1 || !/^\d{1,15}$/.test(length)) throw new Error(`bad Content-Length: ${values("content-length").join(", ")}`);
    framing = { kind: "length", length: Number(length) };
  } else framing = { kind: "close" };
  const dropLength = codings.length > 0 || framing.kind === "chunked" || framing.kind === "close";
  const headers: string[] = [];
  for (const [name, value] of pairs) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || (dropLength && lower === "content-length")) continue;
    headers.push(name, value);
  }
  return { status: code, reason: status[2] ?? "", headers, framing };
}

/** The framing of a chunked body: pushes the data parts of each input into `out`. */
export class ChunkedDecoder {
  private state: "size" | "data" | "data-end" | "trailer" | "done" = "size";
  private line = "";
  private remaining = 0;

  /** True once the last chunk and the trailer section have been read; throws on bad framing. */
  feed(input: Buffer, out: Buffer[]): boolean {
    let offset = 0;
    while (offset < input.length && this.state !== "done") {
      if (this.state === "data") {
        const take = Math.min(this.remaining, input.length - offset);
        out.push(input.subarray(offset, offset + take));
        offset += take;
        this.remaining -= take;
        if (this.remaining === 0) this.state = "data-end";
        continue;
      }
      const newline = input.indexOf(10, offset);
      const end = newline < 0 ? input.length : newline;
      this.line += input.toString("latin1", offset, end);
      if (this.line.length > 4096) throw new Error("chunked body: a line is too long");
      offset = newline < 0 ? input.length : newline + 1;
      if (newline < 0) break;
      const line = this.line.endsWith("\r") ? this.line.slice(0, -1) : this.line;
      this.line = "";
      if (this.state === "size") {
        const size = (line.split(";")[0] ?? "").trim();
        if (!/^[0-9a-fA-F]{1,12}$/.test(size)) throw new Error(`chunked body: bad chunk size ${JSON.stringify(line.slice(0, 40))}`);
        this.remaining = parseInt(size, 16);
        this.state = this.remaining === 0 ? "trailer" : "data";
      } else if (this.state === "data-end") {
        if (line !== "") throw new Error("chunked body: a chunk does not end with CRLF");
        this.state = "size";
      } else if (line === "") this.state = "done";
    }
    return this.state === "done";
  }
}

export class ResponseRelay implements RelayConsumer {
  private readonly res: ServerResponse;
  private readonly method: string;
  private readonly finished: (error?: string) => void;
  private state: "head" | "body" | "done" = "head";
  private head: Buffer = Buffer.alloc(0);
  private framing: Framing = { kind: "close" };
  private remaining = 0;
  private decoder: ChunkedDecoder | undefined;

  /** `finished` is called once: the body is complete (no argument) or failed (why). */
  constructor(res: ServerResponse, method: string, finished: (error?: string) => void) {
    this.res = res;
    this.method = method;
    this.finished = finished;
  }

  data(view: Buffer, done: () => void): void {
    if (this.state === "done") return done();
    try {
      let body = view;
      while (this.state === "head") {
        const start = Math.max(0, this.head.length - 3);
        this.head = Buffer.concat([this.head, body]);
        const end = this.head.indexOf("\r\n\r\n", start);
        if (end < 0) {
          if (this.head.length > MAX_HEAD) throw new Error("the response head is over 64 KiB");
          return done();
        }
        body = body.subarray(body.length - (this.head.length - end - 4));
        const head = parseResponseHead(this.head.toString("latin1", 0, end), this.method);
        this.head = Buffer.alloc(0);
        if (head.status === 101) throw new Error("101 Switching Protocols to a request that asked for no upgrade");
        if (head.status < 200) continue;
        this.start(head);
      }
      const parts: Buffer[] = [];
      let complete = false;
      if (this.state === "body" && body.length > 0) {
        if (this.framing.kind === "length") {
          const take = Math.min(this.remaining, body.length);
          parts.push(body.subarray(0, take));
          this.remaining -= take;
          complete = this.remaining === 0;
        } else if (this.decoder) complete = this.decoder.feed(body, parts);
        else parts.push(body);
      }
      const last = parts.length - 1;
      parts.forEach((part, index) => this.res.write(part, index === last ? () => done() : undefined));
      if (complete) this.complete();
      if (parts.length === 0) done();
    } catch (error) {
      this.fail((error as Error).message);
      done();
    }
  }

  end(): void {
    if (this.state === "done") return;
    if (this.state === "body" && this.framing.kind === "close") this.complete();
    else this.fail(this.state === "head" ? "the upstream closed the connection before a response" : "the upstream closed the connection before the body was complete");
  }

  /** The upstream failed (reset, the gateway closing). */
  fail(why: string): void {
    if (this.state === "done") return;
    this.state = "done";
    if (!this.res.headersSent) {
      const body = `airlock egress: bad response from upstream: ${why}\n`;
      this.res.writeHead(502, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), "x-airlock-egress": "upstream-error" });
      this.res.end(body);
    } else this.res.destroy();
    this.finished(why);
  }

  private start(head: ResponseHead): void {
    this.res.writeHead(head.status, head.reason || undefined, head.headers);
    this.framing = head.framing;
    this.state = "body";
    if (head.framing.kind === "chunked") this.decoder = new ChunkedDecoder();
    if (head.framing.kind === "length") this.remaining = head.framing.length;
    if (head.framing.kind === "none" || (head.framing.kind === "length" && head.framing.length === 0)) this.complete();
  }

  private complete(): void {
    this.state = "done";
    this.res.end();
    this.finished();
  }
}
