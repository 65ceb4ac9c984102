/**
 * The egress gateway's SOCKS5 (`S`) and DNS (`D`) services over its unix socket. A TCP echo
 * server on 127.0.0.1 stands in for a public host (allowed by the test policy); names come from
 * an injected resolver. Only loopback and unix sockets.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { EgressGateway } from "../../src/egress/gateway.ts";
import { buildPolicy } from "../../src/egress/policy.ts";
import { dnsQuery, echoServer, frame, openTagged, parseDnsResponse, readAll, readUntil, socksConnect, splitFrames, tempDir } from "./helpers.ts";

const A = 1;
const AAAA = 28;

describe("egress gateway: SOCKS5 and DNS", () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let gateway: EgressGateway;
  const events: unknown[] = [];

  before(async () => {
    dir = await tempDir();
    echo = await echoServer("127.0.0.1");
    gateway = await EgressGateway.start({
      socketPath: `${dir.dir}/gateway.sock`,
      policy: buildPolicy({ allow: ["127.0.0.1/32"], deny: ["denied.test"], ownAddresses: [] }),
      maxConnections: 16,
      logger: silentLogger,
      onEvent: (event) => events.push(event),
      resolver: async (name) => {
        if (name === "internal.test") return [{ address: "10.1.2.3", family: 4 }, { address: "fd00::1", family: 6 }];
        if (name === "mixed.test") return [{ address: "10.1.2.3", family: 4 }, { address: "127.0.0.1", family: 4 }, { address: "::1", family: 6 }];
        if (name === "missing.test") throw Object.assign(new Error("ENOTFOUND"), { code: "ENOTFOUND" });
        if (name === "broken.test") throw Object.assign(new Error("EAI_AGAIN"), { code: "EAI_AGAIN" });
        if (name === "slow.test") await new Promise((resolve) => setTimeout(resolve, 100));
        return [{ address: "127.0.0.1", family: 4 }];
      },
    });
  });

  after(async () => {
    await gateway.close();
    await echo.close();
    await dir.remove();
  });

  describe("SOCKS5", () => {
    it("connects a domain, an IPv4 and an IPv4-mapped IPv6 address, and relays both ways", async () => {
      for (const target of [{ domain: "public.test" }, { ipv4: "127.0.0.1" }, { ipv6: "::ffff:7f00:1" }]) {
        const { socket, reply } = await socksConnect(gateway.socketPath, target, echo.port);
        assert.equal(reply, 0x00, JSON.stringify(target));
        socket.write("over socks");
        assert.equal((await readUntil(socket, (data) => data.length >= 10)).toString(), "over socks");
        socket.destroy();
      }
      const hosts = gateway.record().connections.filter((item) => item.protocol === "socks" && item.verdict === "allowed").map((item) => item.host);
      assert.deepEqual(hosts, ["public.test", "127.0.0.1", "::ffff:127.0.0.1"]);
    });

    it("passes on bytes the client sent before the reply", async () => {
      const socket = openTagged(gateway.socketPath, "S");
      const port = Buffer.alloc(2);
      port.writeUInt16BE(echo.port);
      socket.write(Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1]), port, Buffer.from("early")]));
      const data = await readUntil(socket, (bytes) => bytes.length >= 2 + 10 + 5);
      assert.deepEqual([...data.subarray(0, 4)], [5, 0, 5, 0]);
      assert.equal(data.subarray(12).toString(), "early");
      socket.destroy();
    });

    const refused: [string, { ipv4?: string; ipv6?: string; domain?: string }][] = [
      ["10.1.2.3", { ipv4: "10.1.2.3" }],
      ["127.0.0.2", { ipv4: "127.0.0.2" }],
      ["169.254.169.254", { ipv4: "169.254.169.254" }],
      ["::1", { ipv6: "::1" }],
      ["a name resolving to private addresses", { domain: "internal.test" }],
      ["0x7f.2 as a domain", { domain: "0x7f.2" }],
      ["an operator-denied name", { domain: "denied.test" }],
    ];
    for (const [label, target] of refused) {
      it(`refuses ${label} with reply 0x02 (not allowed by ruleset)`, async () => {
        const { socket, reply } = await socksConnect(gateway.socketPath, target, echo.port);
        assert.equal(reply, 0x02);
        await readAll(socket);
      });
    }

    it("answers other commands 0x07, other address types 0x08, no usable method 0xff", async () => {
      for (const command of [0x02, 0x03]) {
        const { socket, reply } = await socksConnect(gateway.socketPath, { ipv4: "127.0.0.1" }, echo.port, command);
        assert.equal(reply, 0x07);
        socket.destroy();
      }
      const typed = openTagged(gateway.socketPath, "S");
      typed.write(Buffer.from([5, 1, 0, 5, 1, 0, 9, 0, 0]));
      assert.deepEqual([...(await readAll(typed)).subarray(2, 4)], [5, 8]);
      const auth = openTagged(gateway.socketPath, "S");
      auth.write(Buffer.from([5, 1, 2]));
      assert.deepEqual([...(await readAll(auth))], [5, 0xff]);
      const socks4 = openTagged(gateway.socketPath, "S");
      socks4.write(Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]));
      assert.equal((await readAll(socks4)).length, 0);
    });

    it("answers 0x05 when the upstream refuses, 0x04 when the name does not resolve", async () => {
      const closed = createServer();
      closed.listen(0, "127.0.0.1");
      await once(closed, "listening");
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      assert.equal((await socksConnect(gateway.socketPath, { ipv4: "127.0.0.1" }, port)).reply, 0x05);
      assert.equal((await socksConnect(gateway.socketPath, { domain: "missing.test" }, 80)).reply, 0x04);
    });
  });

  describe("DNS", () => {
    async function ask(queries: Buffer[], split = false): Promise<ReturnType<typeof parseDnsResponse>[]> {
      const socket = openTagged(gateway.socketPath, "D");
      const bytes = Buffer.concat(queries.map(frame));
      if (split) for (const byte of bytes) socket.write(Buffer.from([byte]));
      else socket.write(bytes);
      const data = await readUntil(socket, (read) => splitFrames(read, queries.length) !== undefined);
      socket.destroy();
      return (splitFrames(data, queries.length) ?? []).map(parseDnsResponse);
    }

    it("answers A from the gateway's resolution, AAAA with no records when there are none", async () => {
      const [a, aaaa] = await ask([dnsQuery(1, "public.test", A), dnsQuery(2, "public.test", AAAA)]);
      assert.deepEqual(a, { id: 1, rcode: 0, answers: ["127.0.0.1"] });
      assert.deepEqual(aaaa, { id: 2, rcode: 0, answers: [] });
    });

    it("removes refused addresses, and answers REFUSED when all are refused (recording the question)", async () => {
      const [mixed, mixed6, internal, internal6, denied] = await ask([
        dnsQuery(3, "mixed.test", A),
        dnsQuery(4, "mixed.test", AAAA),
        dnsQuery(5, "internal.test", A),
        dnsQuery(6, "internal.test", AAAA),
        dnsQuery(7, "denied.test", A),
      ]);
      assert.deepEqual(mixed?.answers, ["127.0.0.1"]);
      assert.equal(mixed6?.rcode, 5);
      assert.deepEqual(internal, { id: 5, rcode: 5, answers: [] });
      assert.equal(internal6?.rcode, 5);
      assert.equal(denied?.rcode, 5);
      const entry = gateway.record().connections.find((item) => item.protocol === "dns" && item.host === "internal.test" && item.address === "10.1.2.3");
      assert.equal(entry?.verdict, "refused");
      assert.equal(entry?.port, 53);
      assert.match(entry?.reason ?? "", /10\.0\.0\.0\/8 is private-use/);
      assert.ok(events.some((event) => typeof event === "object" && (event as { host?: string }).host === "internal.test"));
    });

    it("answers NXDOMAIN, SERVFAIL, empty for other types, NOTIMP for ANY and other opcodes, FORMERR for a bad question", async () => {
      const status = dnsQuery(12, "public.test", A);
      status.writeUInt16BE(0x1100, 2); // opcode 2 (STATUS)
      const truncated = dnsQuery(13, "public.test", A).subarray(0, 15);
      const [missing, broken, mx, any, opcode, bad] = await ask([dnsQuery(8, "missing.test", A), dnsQuery(9, "broken.test", A), dnsQuery(10, "public.test", 15), dnsQuery(11, "public.test", 255), status, truncated]);
      assert.equal(missing?.rcode, 3);
      assert.equal(broken?.rcode, 2);
      assert.deepEqual(mx, { id: 10, rcode: 0, answers: [] });
      assert.equal(any?.rcode, 4);
      assert.equal(opcode?.rcode, 4);
      assert.equal(bad?.rcode, 1);
    });

    it("reads frames split into single bytes and answers each query by its id, even out of order", async () => {
      const answers = await ask([dnsQuery(21, "slow.test", A), dnsQuery(22, "public.test", A)], true);
      assert.deepEqual(answers.map((answer) => answer.id).sort(), [21, 22]);
      assert.ok(answers.every((answer) => answer.rcode === 0 && answer.answers[0] === "127.0.0.1"));
    });

    it("answers an address literal asked as a name without resolving it, refusing a private one", async () => {
      const [literal, refused] = await ask([dnsQuery(31, "127.0.0.1", A), dnsQuery(32, "10.0.0.1", A)]);
      assert.deepEqual(literal?.answers, ["127.0.0.1"]);
      assert.equal(refused?.rcode, 5);
    });

    it("ends the connection once the client has ended its side and every answer is out", async () => {
      const socket = openTagged(gateway.socketPath, "D");
      socket.end(frame(dnsQuery(41, "slow.test", A)));
      const data = await readAll(socket);
      assert.equal(parseDnsResponse(splitFrames(data, 1)?.[0] ?? Buffer.alloc(12)).id, 41);
    });
  });
});
