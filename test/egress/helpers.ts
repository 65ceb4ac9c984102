/**
 * Speaking to an egress gateway the way the sandbox's forwarder does: a unix-socket connection,
 * the service byte, then HTTP proxy requests, CONNECT, SOCKS5 or DNS-over-TCP frames. Plus servers
 * on loopback to reach. Only loopback and unix sockets are ever used.
 */
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpServer, request, type IncomingHttpHeaders, type Server as HttpServer } from "node:http";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A connection to the gateway with its service byte written. */
export function openTagged(socketPath: string, tag: string): Socket {
  const socket = connect(socketPath);
  socket.write(tag);
  return socket;
}

export async function tempDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-egress-test-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface ProxyResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One plain-HTTP proxy request (absolute URL) over a fresh tagged connection, or over `socket`. */
export function proxyRequest(socketPath: string, url: string, options: { method?: string; body?: Buffer | string; headers?: Record<string, string>; socket?: Socket } = {}): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    // The URL goes as it is (Node's URL parser would refuse 256.1.1.1 before the gateway sees it).
    const authority = /^[a-z]+:\/\/([^/?#]*)/i.exec(url)?.[1] ?? "";
    const req = request({
      method: options.method ?? "GET",
      path: url,
      setHost: false,
      headers: { Host: authority, ...options.headers },
      createConnection: () => options.socket ?? openTagged(socketPath, "H"),
    });
    req.on("response", (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Reads from `socket` until `predicate` holds for everything read so far. */
export function readUntil(socket: Socket, predicate: (data: Buffer) => boolean, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`timed out; read so far: ${JSON.stringify(data.toString("latin1").slice(0, 300))}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      if (predicate(data)) finish();
    };
    const onEnd = (): void => finish(predicate(data) ? undefined : new Error(`ended early; read: ${JSON.stringify(data.toString("latin1").slice(0, 300))}`));
    const finish = (error?: Error): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      if (error) reject(error);
      else resolve(data);
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
  });
}

/** Everything until the other side closes. */
export function readAll(socket: Socket, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error("readAll timed out")), timeoutMs);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.on("error", () => undefined);
  });
}

/** Sends CONNECT; resolves with the socket and the response head (status line + headers) and any body bytes read. */
export async function connectTunnel(socketPath: string, authority: string): Promise<{ socket: Socket; status: number; head: string; rest: Buffer }> {
  const socket = openTagged(socketPath, "H");
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const data = await readUntil(socket, (bytes) => bytes.includes("\r\n\r\n"));
  const end = data.indexOf("\r\n\r\n");
  const head = data.subarray(0, end).toString("latin1");
  return { socket, status: Number(head.split(" ")[1]), head, rest: data.subarray(end + 4) };
}

/** A SOCKS5 CONNECT; resolves with the socket and the reply code. */
export async function socksConnect(socketPath: string, target: { ipv4?: string; ipv6?: string; domain?: string }, port: number, command = 0x01): Promise<{ socket: Socket; reply: number }> {
  const socket = openTagged(socketPath, "S");
  socket.write(Buffer.from([0x05, 0x01, 0x00]));
  const choice = await readUntil(socket, (bytes) => bytes.length >= 2);
  if (choice[1] !== 0x00) throw new Error(`SOCKS method refused: ${choice.toString("hex")}`);
  let address: Buffer;
  if (target.ipv4) address = Buffer.from([0x01, ...target.ipv4.split(".").map(Number)]);
  else if (target.ipv6) address = Buffer.concat([Buffer.from([0x04]), ipv6Bytes(target.ipv6)]);
  else address = Buffer.concat([Buffer.from([0x03, Buffer.byteLength(target.domain ?? "")]), Buffer.from(target.domain ?? "", "latin1")]);
  const portBytes = Buffer.alloc(2);
  portBytes.writeUInt16BE(port);
  socket.write(Buffer.concat([Buffer.from([0x05, command, 0x00]), address, portBytes]));
  const reply = await readUntil(socket, (bytes) => bytes.length >= 10);
  return { socket, reply: reply[1] ?? -1 };
}

function ipv6Bytes(text: string): Buffer {
  const [head = "", tail = ""] = text.split("::");
  const words = (part: string): number[] => (part ? part.split(":").map((word) => parseInt(word, 16)) : []);
  const all = [...words(head), ...Array<number>(8 - words(head).length - words(tail).length).fill(0), ...words(tail)];
  const bytes = Buffer.alloc(16);
  all.forEach((word, index) => bytes.writeUInt16BE(word, index * 2));
  return bytes;
}

/** A DNS query message (RD set) for one question. */
export function dnsQuery(id: number, name: string, type: number): Buffer {
  const labels = name.split(".").filter(Boolean).map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, "latin1")]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(1, 2);
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
}

export function frame(message: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(message.length);
  return Buffer.concat([length, message]);
}

export interface DnsAnswer {
  id: number;
  rcode: number;
  answers: string[];
}

/** Reads a response: id, rcode and the A/AAAA addresses (answers use name pointers, as the gateway writes them). */
export function parseDnsResponse(message: Buffer): DnsAnswer {
  const id = message.readUInt16BE(0);
  const rcode = message.readUInt16BE(2) & 0xf;
  const count = message.readUInt16BE(6);
  let offset = 12;
  if (message.readUInt16BE(4) === 1) {
    while (message[offset] !== 0) offset += (message[offset] ?? 0) + 1;
    offset += 5;
  }
  const answers: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const type = message.readUInt16BE(offset + 2);
    const length = message.readUInt16BE(offset + 10);
    const data = message.subarray(offset + 12, offset + 12 + length);
    answers.push(type === 1 ? [...data].join(".") : (data.toString("hex").match(/.{4}/g) ?? []).map((word) => parseInt(word, 16).toString(16)).join(":"));
    offset += 12 + length;
  }
  return { id, rcode, answers };
}

/** Splits DNS-over-TCP frames read so far; undefined until `count` whole frames are there. */
export function splitFrames(data: Buffer, count: number): Buffer[] | undefined {
  const frames: Buffer[] = [];
  let offset = 0;
  while (offset + 2 <= data.length) {
    const length = data.readUInt16BE(offset);
    if (offset + 2 + length > data.length) break;
    frames.push(data.subarray(offset + 2, offset + 2 + length));
    offset += 2 + length;
  }
  return frames.length >= count ? frames : undefined;
}

/** An HTTP server on `host` (port chosen by the system); the handler answers every request. */
export async function httpServer(host: string, handler: Parameters<typeof createHttpServer>[1]): Promise<{ server: HttpServer; port: number; close: () => Promise<void> }> {
  const server = createHttpServer(handler);
  server.listen(0, host);
  await once(server, "listening");
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A TCP server that echoes what it gets; `sockets` are its open connections. */
export async function echoServer(host: string): Promise<{ server: Server; port: number; sockets: Set<Socket>; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.pipe(socket);
  });
  server.listen(0, host);
  await once(server, "listening");
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Waits until `condition` holds (checked every 10 ms), failing after `timeoutMs`. */
export async function eventually(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether a server can listen on `host` here (127.0.0.2 needs the whole of 127/8 on lo). */
export async function canListen(host: string): Promise<boolean> {
  const server = createServer();
  try {
    server.listen(0, host);
    await once(server, "listening");
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}
