/**
 * The gateway's HTTP proxy (service `H`): plain-HTTP requests with absolute URLs (any method,
 * keep-alive, several requests per connection), `CONNECT host:port` tunnels, and upgrades
 * (WebSocket over plain HTTP). Node's HTTP parser reads the client's requests (strictly: the
 * client is the untrusted side); responses are relayed from the upstream's read buffer with only
 * their head parsed (http-response.ts); tunnels are relayed without parsing (relay.ts).
 *
 * Per request: PARSE (absolute `http://` URL or CONNECT authority; else 400) -> DIAL (dial.ts:
 * refused -> 403, unreachable -> 502) -> FORWARD. Plain requests: the URL becomes origin-form,
 * Host is the URL's authority, hop-by-hop and Proxy-* headers are dropped and nothing is added
 * but `Connection: close` (one upstream connection per request, freed when it closes); the
 * response goes back with its hop-by-hop headers dropped. CONNECT and upgrades: the socket leaves
 * the parser and is tunnelled. Idle client connections end after 5 minutes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { dial, hostPort, type DialResult, type GatewayContext } from "./dial.ts";
import { ResponseRelay } from "./http-response.ts";

const IDLE_MS = 5 * 60_000;
const HOP_BY_HOP = new Set(["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host", "expect", "http2-settings"]);

interface Target {
  host: string;
  port: number;
  authority: string;
  path: string;
}

/** `http://[user@]host[:port][/path][?query][#fragment]`; undefined for anything else. */
export function parseAbsoluteUrl(url: string): Target | undefined {
  const match = /^http:\/\/([^/?#]*)([^#]*)/i.exec(url);
  if (!match) return undefined;
  const authority = (match[1] ?? "").slice((match[1] ?? "").lastIndexOf("@") + 1);
  const where = parseAuthority(authority, 80);
  if (!where) return undefined;
  const rest = match[2] ?? "";
  return { ...where, authority, path: rest === "" ? "/" : rest.startsWith("?") ? `/${rest}` : rest };
}

/** `host:port` or `[v6]:port` (the port optional when a default is given). */
export function parseAuthority(text: string, defaultPort?: number): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]*\]|[^:[\]]*)(?::(\d{1,5}))?$/.exec(text);
  if (!match || !match[1]) return undefined;
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  if (port === undefined || port < 1 || port > 65535) return undefined;
  return { host: match[1], port };
}

/** Raw header pairs without hop-by-hop ones (nor those the Connection header names) and Proxy-*. */
function forwardable(raw: string[]): string[] {
  const named = new Set<string>();
  for (let index = 0; index + 1 < raw.length; index += 2) {
    if (raw[index]?.toLowerCase() === "connection") for (const item of (raw[index + 1] ?? "").split(",")) named.add(item.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let index = 0; index + 1 < raw.length; index += 2) {
    const name = raw[index] ?? "";
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower.startsWith("proxy-") || named.has(lower)) continue;
    out.push(name, raw[index + 1] ?? "");
  }
  return out;
}

function plain(status: number, message: string, kind: string): { head: Record<string, string | number>; body: string } {
  const body = `${message}\n`;
  return { head: { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), "x-airlock-egress": kind }, body };
}

const STATUS_TEXT: Record<number, string> = { 400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway" };

/** A response written straight to a socket that has left the HTTP parser (CONNECT, upgrade). */
function rawResponse(socket: Socket, status: number, message: string, kind: string): void {
  const { head, body } = plain(status, message, kind);
  const lines = Object.entries(head).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n${lines.join("")}connection: close\r\n\r\n${body}`);
}

function failureStatus(result: Extract<DialResult, { ok: false }>): { status: number; kind: string } {
  return result.failure === "refused" ? { status: 403, kind: "refused" } : { status: 502, kind: "upstream-error" };
}

export class HttpProxy {
  private readonly ctx: GatewayContext;
  private readonly server: Server;

  constructor(ctx: GatewayContext) {
    this.ctx = ctx;
    this.server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 30_000, noDelay: true });
    this.server.on("request", (req: IncomingMessage, res: ServerResponse) => void this.onRequest(req, res));
    this.server.on("connect", (req: IncomingMessage, socket: Socket, head: Buffer) => void this.onTunnel(req, socket, head, "connect"));
    this.server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => void this.onTunnel(req, socket, head, "upgrade"));
    this.server.on("clientError", (error: Error, socket: Socket) => {
      if (socket.writable) rawResponse(socket, 400, `airlock egress: bad request: ${error.message}`, "bad-request");
      else socket.destroy();
    });
  }

  /** Takes over a client connection whose service byte was `H`. */
  handle(socket: Socket): void {
    socket.setTimeout(IDLE_MS, () => socket.destroy());
    this.server.emit("connection", socket);
  }

  private reply(res: ServerResponse, status: number, message: string, kind: string): void {
    const { head, body } = plain(status, message, kind);
    res.writeHead(status, head);
    res.end(body);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.sendDate = false;
    const target = parseAbsoluteUrl(req.url ?? "");
    if (!target) {
      this.reply(res, 400, "airlock egress: this proxy takes absolute http:// URLs (https goes through CONNECT)", "bad-request");
      return;
    }
    const result = await dial(this.ctx, "http", target.host, target.port, "tunnel");
    if (!result.ok) {
      const { status, kind } = failureStatus(result);
      this.reply(res, status, result.message, kind);
      return;
    }
    const { socket: upstream, entry, relay } = result;
    const send = (data: string | Buffer): boolean => {
      entry.addOut(typeof data === "string" ? Buffer.byteLength(data, "latin1") : data.length);
      return upstream.write(data);
    };
    // Node's parser has read the body's framing: a chunked body is chunked again, a sized one goes as it is.
    const codings = req.headers["transfer-encoding"];
    const lines = ["Host", target.authority, ...forwardable(req.rawHeaders), ...(codings ? ["Transfer-Encoding", codings] : []), "Connection", "close"];
    let head = `${req.method ?? "GET"} ${target.path} HTTP/1.1\r\n`;
    for (let index = 0; index + 1 < lines.length; index += 2) head += `${lines[index]}: ${lines[index + 1]}\r\n`;
    send(Buffer.from(`${head}\r\n`, "latin1"));
    req.on("data", (chunk: Buffer) => {
      const more = codings ? send(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")])) : send(chunk);
      if (!more) req.pause();
    });
    upstream.on("drain", () => req.resume());
    req.on("end", () => {
      if (codings) send("0\r\n\r\n");
    });
    const response = new ResponseRelay(res, req.method ?? "GET", (error) => {
      if (error) entry.fail(`${hostPort(target.host, target.port)}: ${error}`);
      upstream.destroy();
    });
    upstream.on("error", (error) => response.fail(error.message));
    upstream.once("close", () => {
      response.fail("the upstream connection closed");
      entry.finish();
    });
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    relay?.take(response);
  }

  private async onTunnel(req: IncomingMessage, socket: Socket, head: Buffer, kind: "connect" | "upgrade"): Promise<void> {
    socket.setTimeout(0);
    const target: Partial<Target> & { host: string; port: number } | undefined = kind === "connect" ? parseAuthority(req.url ?? "") : parseAbsoluteUrl(req.url ?? "");
    if (!target) {
      const usage = kind === "connect" ? "CONNECT takes host:port" : "this proxy takes absolute http:// URLs";
      rawResponse(socket, 400, `airlock egress: ${usage}`, "bad-request");
      return;
    }
    const result = await dial(this.ctx, kind === "connect" ? "connect" : "http", target.host, target.port, "tunnel");
    if (!result.ok) {
      const { status, kind: label } = failureStatus(result);
      rawResponse(socket, status, result.message, label);
      return;
    }
    if (socket.destroyed) {
      result.socket.destroy();
      result.entry.finish();
      return;
    }
    if (kind === "connect") socket.write("HTTP/1.1 200 Connection established\r\n\r\n");
    else {
      const lines = ["Host", target.authority ?? "", ...forwardableUpgrade(req.rawHeaders)];
      let text = `${req.method ?? "GET"} ${target.path ?? "/"} HTTP/1.1\r\n`;
      for (let index = 0; index + 1 < lines.length; index += 2) text += `${lines[index]}: ${lines[index + 1]}\r\n`;
      const bytes = Buffer.from(`${text}\r\n`, "latin1");
      result.entry.addOut(bytes.length);
      result.socket.write(bytes);
    }
    result.relay?.join(socket, head);
  }
}

/** For upgrades, Connection and Upgrade go through (the upstream must see them); Proxy-* and Host do not. */
function forwardableUpgrade(raw: string[]): string[] {
  const out: string[] = [];
  for (let index = 0; index + 1 < raw.length; index += 2) {
    const lower = (raw[index] ?? "").toLowerCase();
    if (lower === "host" || lower.startsWith("proxy-") || lower === "keep-alive") continue;
    out.push(raw[index] ?? "", raw[index + 1] ?? "");
  }
  return out;
}
