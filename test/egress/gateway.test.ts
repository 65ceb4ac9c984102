/**
 * The egress gateway over real sockets: HTTP proxy requests and CONNECT tunnels sent to its unix
 * socket the way the sandbox's forwarder sends them (the service byte first). A server on
 * 127.0.0.1 stands in for a public host (the policy allows 127.0.0.1/32 for these tests only);
 * everything refused is refused before any packet is sent. Only loopback and unix sockets.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect, createServer, type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { EgressGateway } from "../../src/egress/gateway.ts";
import { buildPolicy } from "../../src/egress/policy.ts";
import { EgressRecord, summarizeEgress, type EgressConnection } from "../../src/protocol/index.ts";
import { canListen, connectTunnel, echoServer, eventually, httpServer, openTagged, proxyRequest, readAll, readUntil, tempDir } from "./helpers.ts";

/** Answers every request with what it saw, or a body of a given shape. */
function handler(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/big") {
      const size = Number(url.searchParams.get("bytes"));
      if (url.searchParams.get("chunked") !== "1") res.setHeader("content-length", size);
      const block = Buffer.alloc(64 * 1024, "z");
      let left = size;
      const write = (): void => {
        while (left > 0) {
          const part = block.subarray(0, Math.min(left, block.length));
          left -= part.length;
          if (!res.write(part)) return void res.once("drain", write);
        }
        res.end();
      };
      return write();
    }
    if (url.pathname === "/empty") {
      res.writeHead(204);
      return void res.end();
    }
    res.setHeader("keep-alive", "timeout=1");
    res.setHeader("x-upstream-hop", "drop me");
    res.setHeader("connection", "x-upstream-hop");
    res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.rawHeaders, body: Buffer.concat(chunks).toString() }));
  });
}

describe("egress gateway: HTTP proxy and CONNECT", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let web: Awaited<ReturnType<typeof httpServer>>;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let second: Awaited<ReturnType<typeof httpServer>> | undefined;
  let secondHits = 0;
  let gateway: EgressGateway;
  const events: (EgressConnection | string)[] = [];
  const calls: string[] = [];
  const rebindAnswers = ["127.0.0.1", "10.0.0.1"];

  before(async () => {
    dir = await tempDir();
    web = await httpServer("127.0.0.1", handler);
    echo = await echoServer("127.0.0.1");
    if (await canListen("127.0.0.2")) {
      second = await httpServer("127.0.0.2", (_req, res) => {
        secondHits += 1;
        res.end("you should not see this");
      });
    } else process.stdout.write("# SKIP the 127.0.0.2 server: this host cannot listen on 127.0.0.2 (only the refusal itself is checked)\n");
    gateway = await EgressGateway.start({
      socketPath: `${dir.dir}/gateway.sock`,
      policy: buildPolicy({ allow: ["127.0.0.1/32"], deny: [], ownAddresses: [] }),
      maxConnections: 16,
      logger: silentLogger,
      onEvent: (event) => events.push(event),
      resolver: async (name) => {
        calls.push(name);
        if (name === "internal.test") return [{ address: "10.1.2.3", family: 4 }];
        if (name === "mixed.test") return [{ address: "10.1.2.3", family: 4 }, { address: "127.0.0.1", family: 4 }];
        if (name === "rebind.test") return [{ address: rebindAnswers.shift() ?? "10.0.0.2", family: 4 }];
        if (name === "missing.test") throw Object.assign(new Error("getaddrinfo ENOTFOUND missing.test"), { code: "ENOTFOUND" });
        return [{ address: "127.0.0.1", family: 4 }];
      },
    });
  });

  after(async () => {
    await gateway.close();
    await web.close();
    await echo.close();
    await second?.close();
    await dir.remove();
  });

  it("listens on a unix socket anyone may connect to", async () => {
    const { statSync } = await import("node:fs");
    const stat = statSync(gateway.socketPath);
    assert.ok(stat.isSocket());
    assert.equal(stat.mode & 0o777, 0o666);
  });

  it("forwards a plain-HTTP request in origin-form, without hop-by-hop or Proxy-* headers, adding nothing", async () => {
    const response = await proxyRequest(gateway.socketPath, `http://public.test:${web.port}/path?q=1#frag`, {
      headers: { "Proxy-Authorization": "Basic c2VjcmV0", "Proxy-Connection": "keep-alive", "X-Custom": "kept", "X-Hop": "dropped", Connection: "keep-alive, X-Hop", TE: "trailers" },
    });
    assert.equal(response.status, 200);
    const seen = JSON.parse(response.body.toString()) as { method: string; url: string; headers: string[] };
    assert.equal(seen.url, "/path?q=1");
    const names = seen.headers.filter((_, index) => index % 2 === 0).map((name) => name.toLowerCase());
    assert.deepEqual(names.sort(), ["connection", "host", "x-custom"]);
    assert.equal(seen.headers[seen.headers.findIndex((name) => name.toLowerCase() === "host") + 1], `public.test:${web.port}`);
    assert.equal(response.headers["x-upstream-hop"], undefined, "a header the response's Connection names is dropped");
    assert.equal(response.headers["x-airlock-egress"], undefined);
  });

  it("keeps a client connection alive across several requests (GET, POST with a body, a chunked body), and pipelined ones", async () => {
    const socket = openTagged(gateway.socketPath, "H");
    const url = `http://127.0.0.1:${web.port}`;
    const first = await proxyRequest("", `${url}/one`, { socket, headers: { connection: "keep-alive" } });
    assert.equal(first.status, 200);
    const posted = await proxyRequest("", `${url}/two`, { socket, method: "POST", body: "hello body", headers: { connection: "keep-alive" } });
    assert.equal((JSON.parse(posted.body.toString()) as { body: string }).body, "hello body");
    assert.equal(socket.destroyed, false);
    socket.destroy();

    const raw = openTagged(gateway.socketPath, "H");
    raw.write(
      `POST ${url}/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n` +
        `GET ${url}/three HTTP/1.1\r\nHost: x\r\n\r\nGET ${url}/empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    const text = (await readAll(raw)).toString();
    assert.match(text, /"body":"hello world"/);
    assert.match(text, /"url":"\/three"/);
    assert.match(text, /HTTP\/1\.1 204/);
    assert.ok(text.indexOf("hello world") < text.indexOf("/three") && text.indexOf("/three") < text.indexOf("204"), "answers in order");
  });

  it("relays bodies whole: 5 MiB sized, 3 MiB chunked, HEAD", async () => {
    const sized = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${web.port}/big?bytes=${5 * 1024 * 1024}`);
    assert.equal(sized.body.length, 5 * 1024 * 1024);
    assert.equal(sized.headers["content-length"], String(5 * 1024 * 1024));
    const chunked = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${web.port}/big?bytes=${3 * 1024 * 1024}&chunked=1`);
    assert.equal(chunked.body.length, 3 * 1024 * 1024);
    assert.ok(chunked.body.every((byte) => byte === 0x7a));
    const head = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${web.port}/big?bytes=1000`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers["content-length"], "1000");
  });

  it("tunnels CONNECT both ways, byte for byte (8 MiB echoed)", async () => {
    const tunnel = await connectTunnel(gateway.socketPath, `public.test:${echo.port}`);
    assert.equal(tunnel.status, 200);
    const payload = Buffer.alloc(8 * 1024 * 1024);
    for (let index = 0; index < payload.length; index += 4) payload.writeUInt32LE(index, index);
    const received = readUntil(tunnel.socket, (data) => data.length >= payload.length, 20_000);
    tunnel.socket.end(payload);
    const data = await received;
    assert.equal(createHash("sha256").update(data).digest("hex"), createHash("sha256").update(payload).digest("hex"));
    tunnel.socket.destroy();
  });

  const refusals: [string, string, RegExp][] = [
    ["127.0.0.2 (no allow rule)", "127.0.0.2", /^airlock egress: refused 127\.0\.0\.2:\d+: 127\.0\.0\.0\/8 is loopback/],
    ["0x7f.2", "0x7f.2", /^airlock egress: refused 127\.0\.0\.2:\d+ \(0x7f\.2\): 127\.0\.0\.0\/8 is loopback/],
    ["2130706434", "2130706434", /^airlock egress: refused 127\.0\.0\.2:\d+ \(2130706434\): 127\.0\.0\.0\/8 is loopback/],
    ["[::ffff:127.0.0.2]", "[::ffff:127.0.0.2]", /refused \[::ffff:127\.0\.0\.2\]:\d+ \(\[::ffff:127\.0\.0\.2\]\): 127\.0\.0\.0\/8 is loopback.*IPv4-mapped/],
    ["[::1]", "[::1]", /refused \[::1\]:\d+ \(\[::1\]\): ::1\/128 is loopback/],
    ["a name resolving to 10.1.2.3", "internal.test", /^airlock egress: refused 10\.1\.2\.3:\d+ \(internal\.test\): 10\.0\.0\.0\/8 is private-use \(RFC 1918\)/],
    ["169.254.169.254", "169.254.169.254", /refused 169\.254\.169\.254:\d+: 169\.254\.169\.254\/32 is the cloud metadata service/],
    ["256.1.1.1 (malformed)", "256.1.1.1", /refused 256\.1\.1\.1:\d+: "256\.1\.1\.1" looks like an IPv4 address but is not a valid one/],
  ];
  for (const [label, host, message] of refusals) {
    it(`refuses ${label} with 403, over HTTP and CONNECT`, async () => {
      const port = second?.port ?? web.port;
      const hostPort = `${host}:${port}`;
      const response = await proxyRequest(gateway.socketPath, `http://${hostPort}/`);
      assert.equal(response.status, 403);
      assert.equal(response.headers["x-airlock-egress"], "refused");
      assert.match(response.headers["content-type"] ?? "", /^text\/plain/);
      assert.match(response.body.toString(), message);
      const tunnel = await connectTunnel(gateway.socketPath, hostPort);
      assert.equal(tunnel.status, 403);
      assert.match(tunnel.head, /x-airlock-egress: refused/i);
      assert.match((tunnel.rest.length > 0 ? tunnel.rest : await readAll(tunnel.socket)).toString(), message);
      tunnel.socket.destroy();
      assert.equal(secondHits, 0, "the 127.0.0.2 server never saw a request");
    });
  }

  it("tells the executor of every refusal (onEvent)", () => {
    const refused = events.filter((event): event is EgressConnection => typeof event !== "string");
    assert.ok(refused.length >= refusals.length * 2);
    assert.ok(refused.every((event) => event.verdict === "refused" && event.reason));
    assert.ok(refused.some((event) => event.host === "internal.test" && event.address === "10.1.2.3" && event.rule === "deny 10.0.0.0/8 (private-use, RFC 1918)"));
  });

  it("connects to the address it checked: one lookup per connection, never a second (no rebinding)", async () => {
    calls.length = 0;
    const response = await proxyRequest(gateway.socketPath, `http://rebind.test:${web.port}/rebind`);
    assert.equal(response.status, 200);
    assert.equal((JSON.parse(response.body.toString()) as { url: string }).url, "/rebind");
    assert.deepEqual(calls, ["rebind.test"], "the resolver was asked once");
    assert.deepEqual(rebindAnswers, ["10.0.0.1"], "its second answer was never taken");
    const entry = gateway.record().connections.find((item) => item.host === "rebind.test");
    assert.equal(entry?.address, "127.0.0.1");
  });

  it("skips refused answers and connects to the allowed one", async () => {
    const response = await proxyRequest(gateway.socketPath, `http://mixed.test:${web.port}/mixed`);
    assert.equal(response.status, 200);
    const entry = gateway.record().connections.find((item) => item.host === "mixed.test");
    assert.equal(entry?.address, "127.0.0.1");
    assert.equal(entry?.verdict, "allowed");
  });

  it("answers 502 when the upstream cannot be reached or the name not resolved", async () => {
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const response = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${port}/`);
    assert.equal(response.status, 502);
    assert.equal(response.headers["x-airlock-egress"], "upstream-error");
    assert.match(response.body.toString(), /could not connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/);
    const tunnel = await connectTunnel(gateway.socketPath, `127.0.0.1:${port}`);
    assert.equal(tunnel.status, 502);
    tunnel.socket.destroy();
    const missing = await proxyRequest(gateway.socketPath, `http://missing.test/`);
    assert.equal(missing.status, 502);
    assert.match(missing.body.toString(), /could not resolve missing\.test: ENOTFOUND/);
  });

  it("answers 400 to requests that are not proxy requests, and closes on an unknown service byte", async () => {
    const socket = openTagged(gateway.socketPath, "H");
    socket.write("GET /relative HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.match((await readAll(socket)).toString(), /^HTTP\/1\.1 400[\s\S]*absolute http:\/\/ URLs/);
    const https = await proxyRequest(gateway.socketPath, "https://127.0.0.1/");
    assert.equal(https.status, 400);
    const unknown = openTagged(gateway.socketPath, "X");
    unknown.write("GET / HTTP/1.1\r\n\r\n");
    assert.equal((await readAll(unknown)).length, 0);
  });

  it("records every destination: verdict, rule, address, bytes; valid against the schema", () => {
    const record = EgressRecord.parse(gateway.record());
    assert.equal(record.version, 1);
    assert.deepEqual(record.policy, { allow: ["127.0.0.1/32"], deny: [], maxConnections: 16 });
    assert.equal(record.totals.connections, record.connections.length);
    assert.equal(record.totals.allowed + record.totals.refused, record.totals.connections);
    assert.equal(record.dropped, 0);
    const tunnel = record.connections.find((item) => item.protocol === "connect" && item.verdict === "allowed" && item.port === echo.port);
    assert.ok(tunnel);
    assert.equal(tunnel.host, "public.test");
    assert.equal(tunnel.address, "127.0.0.1");
    assert.equal(tunnel.rule, "allow 127.0.0.1/32");
    assert.ok(tunnel.bytesOut >= 8 * 1024 * 1024 && tunnel.bytesIn >= 8 * 1024 * 1024);
    const big = record.connections.find((item) => item.protocol === "http" && item.bytesIn >= 5 * 1024 * 1024);
    assert.ok(big, "a plain-HTTP download counts its bytes in");
    assert.ok(record.connections.some((item) => item.verdict === "refused" && item.host === "0x7f.2" && item.address === "127.0.0.2"));
    const failed = record.connections.find((item) => item.host === "missing.test");
    assert.equal(failed?.verdict, "allowed");
    assert.match(failed?.error ?? "", /ENOTFOUND/);
    const summary = summarizeEgress(record);
    assert.match(summary, /^egress: \d+ connection\(s\), \d+ allowed, \d+ refused/);
    assert.match(summary, /refused internal\.test:\d+ \(10\.1\.2\.3\) x2: 10\.0\.0\.0\/8 is private-use/);
    assert.match(summary, /top destinations: public\.test:\d+ 16\.0 MiB/);
  });

  it("close() ends open tunnels, stops listening, and can be called again", async () => {
    const own = await EgressGateway.start({ socketPath: `${dir.dir}/close.sock`, policy: buildPolicy({ allow: ["127.0.0.1/32"], deny: [], ownAddresses: [] }), maxConnections: 4, logger: silentLogger });
    const tunnel = await connectTunnel(own.socketPath, `127.0.0.1:${echo.port}`);
    assert.equal(tunnel.status, 200);
    tunnel.socket.write("ping");
    await readUntil(tunnel.socket, (data) => data.toString() === "ping");
    const idle = openTagged(own.socketPath, "H");
    idle.on("error", () => undefined); // closed with its request unread: a reset is fine
    await once(idle, "connect");
    const closed = (socket: typeof idle): Promise<unknown> => new Promise((resolve) => socket.once("close", resolve));
    const ended = Promise.all([closed(tunnel.socket), closed(idle)]);
    await own.close();
    await ended;
    await own.close();
    const after = connect(own.socketPath);
    const [error] = (await once(after, "error")) as [NodeJS.ErrnoException];
    assert.ok(error.code === "ENOENT" || error.code === "ECONNREFUSED");
    const record = own.record();
    assert.equal(record.connections.length, 1);
    assert.ok(record.connections[0]!.durationMs >= 0);
    assert.equal(record.connections[0]!.bytesIn, 4);
    await eventually(() => echo.sockets.size === 0, "the upstream side to be closed too");
  });
});

