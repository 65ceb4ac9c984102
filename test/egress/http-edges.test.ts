/**
 * The egress gateway's HTTP proxy against upstreams that misbehave or do unusual things: bodies
 * ending at close, malformed and truncated responses, upgrades, servers that speak first,
 * half-closed tunnels, an IPv6 upstream. Raw TCP servers on loopback; the gateway on a unix socket.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { EgressGateway } from "../../src/egress/gateway.ts";
import { buildPolicy } from "../../src/egress/policy.ts";
import { canListen, connectTunnel, openTagged, proxyRequest, readAll, readUntil, tempDir } from "./helpers.ts";

/** A TCP server on `host` running `serve` for each connection. */
async function rawServer(host: string, serve: (socket: Socket) => void): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
    serve(socket);
  });
  server.listen(0, host);
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** Answers one request (after its head) with `response`, then closes (or not). */
function answer(response: string | Buffer, close = true): (socket: Socket) => void {
  return (socket) => {
    let seen = "";
    socket.on("data", (chunk: Buffer) => {
      seen += chunk.toString("latin1");
      if (!seen.includes("\r\n\r\n")) return;
      if (close) socket.end(response);
      else socket.write(response);
    });
  };
}

describe("egress gateway: HTTP edge cases", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let gateway: EgressGateway;
  const servers: { close: () => void }[] = [];
  const serve = async (handler: (socket: Socket) => void, host = "127.0.0.1"): Promise<number> => {
    const server = await rawServer(host, handler);
    servers.push(server);
    return server.port;
  };

  before(async () => {
    dir = await tempDir();
    gateway = await EgressGateway.start({ socketPath: `${dir.dir}/gateway.sock`, policy: buildPolicy({ allow: ["127.0.0.1/32", "::1"], deny: [], ownAddresses: [] }), maxConnections: 16, logger: silentLogger });
  });

  after(async () => {
    await gateway.close();
    for (const server of servers) server.close();
    await dir.remove();
  });

  it("relays a body that ends at close (HTTP/1.0, no length), then reuses nothing", async () => {
    const port = await serve(answer("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"));
    const response = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${port}/`);
    assert.equal(response.status, 200);
    assert.equal(response.body.toString(), "until the end");
  });

  it("skips 1xx heads and relays the final response", async () => {
    const port = await serve(answer("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    const response = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${port}/`);
    assert.equal(response.status, 200);
    assert.equal(response.body.toString(), "ok");
  });

  it("answers 502 to a malformed response or one that never comes", async () => {
    const garbage = await serve(answer("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
    const bad = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${garbage}/`);
    assert.equal(bad.status, 502);
    assert.match(bad.body.toString(), /bad response from upstream: not an HTTP\/1\.x status line/);
    const silent = await serve((socket) => socket.once("data", () => socket.end()));
    const none = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${silent}/`);
    assert.equal(none.status, 502);
    assert.match(none.body.toString(), /closed the connection before a response/);
  });

  it("never passes a truncated body off as whole: the client's connection is cut", async () => {
    const port = await serve(answer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"));
    await assert.rejects(proxyRequest(gateway.socketPath, `http://127.0.0.1:${port}/`), /aborted|ECONNRESET|socket hang up/);
    const chunked = await serve(answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
    await assert.rejects(proxyRequest(gateway.socketPath, `http://127.0.0.1:${chunked}/`), /aborted|ECONNRESET|socket hang up/);
  });

  it("tunnels an upgrade (a WebSocket-style 101) to an absolute URL", async () => {
    const port = await serve((socket) => {
      let seen = "";
      const onData = (chunk: Buffer): void => {
        seen += chunk.toString("latin1");
        if (!seen.includes("\r\n\r\n")) return;
        socket.off("data", onData);
        const head = seen.slice(0, seen.indexOf("\r\n\r\n"));
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Saw: ${head.split("\r\n")[0]}\r\n\r\n`);
        const rest = seen.slice(seen.indexOf("\r\n\r\n") + 4);
        if (rest) socket.write(rest);
        socket.pipe(socket);
      };
      socket.on("data", onData);
    });
    const socket = openTagged(gateway.socketPath, "H");
    socket.write(`GET http://127.0.0.1:${port}/chat HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: echo\r\nProxy-Authorization: x\r\n\r\nfirst`);
    const head = await readUntil(socket, (data) => data.includes("first"));
    assert.match(head.toString(), /^HTTP\/1\.1 101 Switching Protocols/);
    assert.match(head.toString(), /X-Saw: GET \/chat HTTP\/1\.1/);
    socket.write("second");
    assert.match((await readUntil(socket, (data) => data.includes("second"))).toString(), /second/);
    socket.destroy();
  });

  it("CONNECT: a server that speaks first is heard after the 200, and half-closes pass through", async () => {
    const banner = await serve((socket) => socket.write("220 hello\r\n"));
    const first = await connectTunnel(gateway.socketPath, `127.0.0.1:${banner}`);
    assert.equal(first.status, 200);
    const greeting = first.rest.length > 0 ? first.rest : await readUntil(first.socket, (data) => data.length > 0);
    assert.equal(greeting.toString(), "220 hello\r\n");
    first.socket.destroy();

    const collector = await serve((socket) => {
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.on("end", () => socket.end(`got ${Buffer.concat(chunks).length} bytes`));
    });
    const second = await connectTunnel(gateway.socketPath, `127.0.0.1:${collector}`);
    second.socket.end("x".repeat(100_000));
    assert.equal((await readAll(second.socket)).toString(), "got 100000 bytes");
  });

  it("connects to an IPv6 upstream ([::1], allowed here)", async (t) => {
    if (!(await canListen("::1"))) {
      t.skip("this host cannot listen on ::1");
      process.stdout.write("# SKIP IPv6 upstream: this host cannot listen on ::1\n");
      return;
    }
    const port = await serve(answer("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsix!"), "::1");
    const response = await proxyRequest(gateway.socketPath, `http://[::1]:${port}/`);
    assert.equal(response.status, 200);
    assert.equal(response.body.toString(), "six!");
    const entry = gateway.record().connections.find((item) => item.host === "[::1]");
    assert.equal(entry?.address, "::1");
    assert.equal(entry?.rule, "allow ::1");
  });
});
