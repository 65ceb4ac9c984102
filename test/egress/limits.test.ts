/**
 * The egress gateway's limits: the job's byte limit (resources.egress) ends every connection
 * and refuses new ones; connections beyond the limit at once (resources.connections) are
 * refused, naming it; the record keeps a bounded number of entries. Loopback and unix sockets only.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { EgressGateway } from "../../src/egress/gateway.ts";
import { buildPolicy } from "../../src/egress/policy.ts";
import type { EgressConnection } from "../../src/protocol/index.ts";
import { connectTunnel, dnsQuery, echoServer, eventually, frame, httpServer, openTagged, parseDnsResponse, proxyRequest, readAll, readUntil, socksConnect, splitFrames, tempDir } from "./helpers.ts";

const MiB = 1024 * 1024;
const policy = (): ReturnType<typeof buildPolicy> => buildPolicy({ allow: ["127.0.0.1/32"], deny: [], ownAddresses: [] });

/** A server that sends `bytes` to whoever connects and writes anything. */
async function firehose(bytes: number): Promise<{ server: Server; port: number }> {
  const block = Buffer.alloc(64 * 1024, 1);
  const server = createServer((socket: Socket) => {
    socket.on("error", () => undefined);
    socket.once("data", () => {
      let left = bytes;
      const write = (): void => {
        while (left > 0) {
          left -= block.length;
          if (!socket.write(block)) return void socket.once("drain", write);
        }
        socket.end();
      };
      write();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: (server.address() as AddressInfo).port };
}

describe("egress gateway: limits", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let echo: Awaited<ReturnType<typeof echoServer>>;

  before(async () => {
    dir = await tempDir();
    echo = await echoServer("127.0.0.1");
  });

  after(async () => {
    await echo.close();
    await dir.remove();
  });

  it("at the byte limit ends every open connection, refuses new ones, and says so once", async () => {
    const hose = await firehose(8 * MiB);
    const events: (EgressConnection | string)[] = [];
    const gateway = await EgressGateway.start({ socketPath: `${dir.dir}/bytes.sock`, policy: policy(), maxBytes: MiB, maxConnections: 8, logger: silentLogger, onEvent: (event) => events.push(event) });
    try {
      const idle = await connectTunnel(gateway.socketPath, `127.0.0.1:${echo.port}`);
      assert.equal(idle.status, 200);
      idle.socket.on("error", () => undefined);
      const idleClosed = new Promise((resolve) => idle.socket.once("close", resolve));
      const tunnel = await connectTunnel(gateway.socketPath, `127.0.0.1:${hose.port}`);
      tunnel.socket.write("go");
      const received = (await readAll(tunnel.socket, 10_000)).length + tunnel.rest.length;
      assert.ok(received < 8 * MiB, `the download was cut (got ${received} bytes)`);
      assert.ok(received >= MiB - 64 * 1024, `bytes flowed up to the limit (got ${received})`);
      await idleClosed;
      const record = gateway.record();
      assert.equal(record.limitHit, "the job's egress limit (resources.egress) of 1.0 MiB was reached");
      assert.equal(record.policy.maxBytes, MiB);
      assert.ok(record.totals.bytesIn + record.totals.bytesOut > MiB);
      assert.deepEqual(events.filter((event) => typeof event === "string"), [record.limitHit]);

      const refused = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${echo.port}/`);
      assert.equal(refused.status, 403);
      assert.match(refused.body.toString(), /refused 127\.0\.0\.1:\d+: the job's egress limit \(resources\.egress\) of 1\.0 MiB was reached/);
      assert.equal((await socksConnect(gateway.socketPath, { ipv4: "127.0.0.1" }, echo.port)).reply, 0x02);
      const dns = openTagged(gateway.socketPath, "D");
      dns.write(frame(dnsQuery(1, "example.test", 1)));
      const answer = splitFrames(await readUntil(dns, (data) => splitFrames(data, 1) !== undefined), 1)?.[0];
      assert.equal(parseDnsResponse(answer ?? Buffer.alloc(12)).rcode, 5);
      dns.destroy();
    } finally {
      await gateway.close();
      hose.server.close();
    }
  });

  it("a plain-HTTP download is cut at the byte limit too", async () => {
    const web = await httpServer("127.0.0.1", (_req, res) => {
      res.setHeader("content-length", 4 * MiB);
      res.end(Buffer.alloc(4 * MiB, 2));
    });
    const gateway = await EgressGateway.start({ socketPath: `${dir.dir}/bytes-http.sock`, policy: policy(), maxBytes: 512 * 1024, maxConnections: 8, logger: silentLogger });
    try {
      await assert.rejects(proxyRequest(gateway.socketPath, `http://127.0.0.1:${web.port}/`), /aborted|socket hang up|ECONNRESET/);
      assert.match(gateway.record().limitHit ?? "", /512\.0 KiB was reached/);
    } finally {
      await gateway.close();
      await web.close();
    }
  });

  it("refuses connections beyond the limit at once, naming it, and takes new ones as others end", async () => {
    const events: (EgressConnection | string)[] = [];
    const gateway = await EgressGateway.start({ socketPath: `${dir.dir}/conns.sock`, policy: policy(), maxConnections: 2, logger: silentLogger, onEvent: (event) => events.push(event) });
    try {
      const first = await connectTunnel(gateway.socketPath, `127.0.0.1:${echo.port}`);
      const second = await connectTunnel(gateway.socketPath, `127.0.0.1:${echo.port}`);
      assert.deepEqual([first.status, second.status], [200, 200]);
      const third = await connectTunnel(gateway.socketPath, `127.0.0.1:${echo.port}`);
      assert.equal(third.status, 403);
      const body = (third.rest.length > 0 ? third.rest : await readAll(third.socket)).toString();
      assert.match(body, /the job's limit of 2 connections at once \(resources\.connections\) was reached/);
      assert.equal((await socksConnect(gateway.socketPath, { ipv4: "127.0.0.1" }, echo.port)).reply, 0x02);
      const http = await proxyRequest(gateway.socketPath, `http://127.0.0.1:${echo.port}/`);
      assert.equal(http.status, 403);
      assert.ok(events.some((event) => typeof event !== "string" && /resources\.connections/.test(event.reason ?? "")));

      first.socket.destroy();
      // The slot is free once the gateway has seen the close and ended the upstream side.
      let again = await connectTunnel(gateway.socketPath, `127.0.0.1:${echo.port}`);
      await eventually(async () => {
        if (again.status === 200) return true;
        again.socket.destroy();
        again = await connectTunnel(gateway.socketPath, `127.0.0.1:${echo.port}`);
        return again.status === 200;
      }, "a connection slot to be freed");
      again.socket.write("still works");
      assert.equal((await readUntil(again.socket, (data) => data.length >= 11)).toString(), "still works");
      second.socket.destroy();
      again.socket.destroy();
    } finally {
      await gateway.close();
    }
  });

  it("keeps the first entries of a long record and counts the rest as dropped", async () => {
    const gateway = await EgressGateway.start({ socketPath: `${dir.dir}/entries.sock`, policy: policy(), maxConnections: 4, maxEntries: 3, logger: silentLogger });
    try {
      for (let index = 0; index < 5; index += 1) {
        const response = await proxyRequest(gateway.socketPath, `http://10.0.0.${index + 1}/`);
        assert.equal(response.status, 403);
      }
      const record = gateway.record();
      assert.equal(record.connections.length, 3);
      assert.equal(record.dropped, 2);
      assert.equal(record.totals.connections, 5);
      assert.equal(record.totals.refused, 5);
    } finally {
      await gateway.close();
    }
  });
});
