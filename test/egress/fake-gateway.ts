/**
 * A stand-in for the egress gateway (src/egress/gateway.ts), for the forwarder's and the
 * microVM's network tests: a unix-socket server speaking the gateway's wire protocol (a tag byte,
 * then the service's bytes) with canned answers and no way out.
 *   H  an HTTP proxy: GET http://example.test/ answers CANNED_BODY; /big sends `big`; PUT /upload
 *      answers "<bytes> <sha256>"; /wait answers once `barrier` requests wait together; CONNECT
 *      opens a tunnel to the same canned server.
 *   S  SOCKS5 (the request's target recorded, then the canned server), or, when the first byte
 *      is not 5, an echo of "received <bytes> <sha256>" sent after the client half-closed.
 *   D  DNS over TCP: every A query answered with ANSWER_ADDRESS, other types with no records.
 * `direct` (optional) is a second socket serving the canned HTTP server without a tag, to compare.
 */
import { createHash } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Server, type Socket } from "node:net";

export const CANNED_BODY = "hello from the fake gateway\n";
export const ANSWER_ADDRESS = [192, 0, 2, 10] as const;

export interface FakeGateway {
  /** The tag byte of every connection, in order of arrival. */
  readonly tags: string[];
  readonly socksTargets: string[];
  readonly dnsNames: string[];
  big: Buffer;
  barrier: number;
  close(): Promise<void>;
}

/** The answer to a DNS query: A records get ANSWER_ADDRESS, anything else an empty NOERROR answer. */
export function dnsAnswer(query: Buffer): { answer: Buffer; name: string } {
  let at = 12;
  const labels: string[] = [];
  while (at < query.length && query[at] !== 0) {
    const length = query[at] ?? 0;
    labels.push(query.toString("latin1", at + 1, at + 1 + length));
    at += length + 1;
  }
  at += 1;
  const type = query.readUInt16BE(at);
  const question = query.subarray(12, at + 4);
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  header.writeUInt16BE(0x8080 | (query.readUInt16BE(2) & 0x0100), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(type === 1 ? 1 : 0, 6);
  const record = type === 1 ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ANSWER_ADDRESS]) : Buffer.alloc(0);
  return { answer: Buffer.concat([header, question, record]), name: labels.join(".") };
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
}

export async function startFakeGateway(path: string, options: { direct?: string } = {}): Promise<FakeGateway> {
  const sockets = new Set<Socket>();
  let waiting: ServerResponse[] = [];
  const gateway: FakeGateway = {
    tags: [],
    socksTargets: [],
    dnsNames: [],
    big: Buffer.alloc(0),
    barrier: 1,
    close: async () => {
      for (const response of waiting) response.end("closed\n");
      for (const socket of sockets) socket.destroy();
      await Promise.all([server, direct].map((each) => new Promise<void>((resolve) => (each ? each.close(() => resolve()) : resolve()))));
    },
  };
  const http = createHttpServer((request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://example.test");
    if (url.pathname === "/big") {
      response.end(gateway.big);
    } else if (url.pathname === "/upload") {
      const hash = createHash("sha256");
      let bytes = 0;
      request.on("data", (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      request.on("end", () => response.end(`${bytes} ${hash.digest("hex")}\n`));
    } else if (url.pathname === "/wait") {
      waiting.push(response);
      if (waiting.length >= gateway.barrier) {
        for (const each of waiting) each.end(`released with ${waiting.length} waiting\n`);
        waiting = [];
      }
    } else {
      response.end(CANNED_BODY);
    }
  });
  http.on("connect", (_request: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length) socket.unshift(head);
    http.emit("connection", socket);
  });

  const socks = (socket: Socket, first: Buffer): void => {
    let buffer = first;
    let greeted = false;
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk]);
      step();
    };
    const step = (): void => {
      if (!greeted) {
        if (buffer.length < 2 || buffer.length < 2 + (buffer[1] ?? 0)) return;
        buffer = buffer.subarray(2 + (buffer[1] ?? 0));
        socket.write(Buffer.from([5, 0]));
        greeted = true;
      }
      if (buffer.length < 5) return;
      const type = buffer[3];
      const length = type === 1 ? 4 : type === 4 ? 16 : 1 + (buffer[4] ?? 0);
      if (buffer.length < 4 + length + 2) return;
      gateway.socksTargets.push(type === 3 ? buffer.toString("latin1", 5, 5 + (buffer[4] ?? 0)) : `address type ${type}`);
      const rest = buffer.subarray(4 + length + 2);
      socket.off("data", onData);
      socket.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
      if (rest.length) socket.unshift(rest);
      http.emit("connection", socket);
    };
    socket.on("data", onData);
    step();
  };

  const echoAfterEnd = (socket: Socket, first: Buffer): void => {
    const hash = createHash("sha256").update(first);
    let bytes = first.length;
    socket.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.on("end", () => socket.end(`received ${bytes} ${hash.digest("hex")}\n`));
  };

  const dns = (socket: Socket, first: Buffer): void => {
    let buffer = first;
    const step = (): void => {
      while (buffer.length >= 2 && buffer.length >= 2 + buffer.readUInt16BE(0)) {
        const query = buffer.subarray(2, 2 + buffer.readUInt16BE(0));
        buffer = buffer.subarray(2 + query.length);
        const { answer, name } = dnsAnswer(query);
        gateway.dnsNames.push(name);
        const length = Buffer.alloc(2);
        length.writeUInt16BE(answer.length);
        socket.write(Buffer.concat([length, answer]));
      }
    };
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      step();
    });
    socket.on("end", () => socket.end());
    step();
  };

  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let start = Buffer.alloc(0);
    const onStart = (chunk: Buffer): void => {
      start = Buffer.concat([start, chunk]);
      const tag = String.fromCharCode(start[0] ?? 0);
      if (tag === "S" && start.length < 2) return;
      socket.off("data", onStart);
      gateway.tags.push(tag);
      const rest = start.subarray(1);
      if (tag === "H") {
        if (rest.length) socket.unshift(rest);
        http.emit("connection", socket);
      } else if (tag === "S") {
        if (rest[0] === 5) socks(socket, rest);
        else echoAfterEnd(socket, rest);
      } else if (tag === "D") {
        dns(socket, rest);
      } else {
        socket.destroy();
      }
    };
    socket.on("data", onStart);
  });
  await listen(server, path);
  let direct: Server | undefined;
  if (options.direct) {
    direct = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      http.emit("connection", socket);
    });
    await listen(direct, options.direct);
  }
  return gateway;
}
