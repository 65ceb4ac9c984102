/**
 * The egress forwarder, built by ensureForwarder and run in a fresh user and network namespace
 * (`unshare -rn`: loopback only, so nothing can leave) against a fake gateway on a unix socket:
 * the tag bytes, HTTP proxying and CONNECT, SOCKS5, DNS over UDP and TCP, half-close, many
 * connections at once, 100 MiB each way intact, exit statuses and signals, no fds leaked into the
 * command, and --stdio as QEMU runs it (one socket as stdin, stdout and stderr).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { ensureForwarder } from "../../src/egress/forwarder.ts";
import { ANSWER_ADDRESS, CANNED_BODY, startFakeGateway, type FakeGateway } from "./fake-gateway.ts";

function unavailable(): string | undefined {
  if (spawnSync("unshare", ["-rn", "true"]).status !== 0) return "`unshare -rn` does not work here (user namespaces disabled?)";
  if (spawnSync("sh", ["-c", "command -v curl"]).status !== 0) return "curl is not installed";
  return undefined;
}

const skip = unavailable();
if (skip) process.stdout.write(`# SKIP forwarder tests: ${skip}\n`);

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

describe("egress forwarder", { skip }, () => {
  let root: string;
  let forwarder: string;
  let socket: string;
  let gateway: FakeGateway;

  /** Runs `script` under the forwarder in a fresh network namespace; `prefix` goes before the forwarder (setpriv...). */
  const inSandbox = (script: string, options: { prefix?: string[]; onStdout?: (text: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<Ran> =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const child = spawn("unshare", ["-rn", ...(options.prefix ?? []), forwarder, "--unix", socket, "--", "sh", "-c", script], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString("utf8");
        options.onStdout?.(stdout, child);
      });
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - started }));
    });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-forwarder-"));
    forwarder = await ensureForwarder(join(root, "data"), silentLogger);
    socket = join(root, "gateway.sock");
    gateway = await startFakeGateway(socket, { direct: join(root, "direct.sock") });
  });
  after(async () => {
    await gateway.close();
    await rm(root, { recursive: true, force: true });
  });

  it("is built once per source, concurrent callers sharing the build", async () => {
    const again = await Promise.all([ensureForwarder(join(root, "data"), silentLogger), ensureForwarder(join(root, "data"), silentLogger)]);
    assert.deepEqual(again, [forwarder, forwarder]);
    assert.match(forwarder, /egress\/forwarder-[0-9a-f]{16}$/);
    assert.ok(((await stat(forwarder)).mode & 0o111) !== 0);
    const elf = spawnSync("sh", ["-c", `od -An -c -N4 ${forwarder}`], { encoding: "utf8" }).stdout;
    assert.match(elf, /E\s+L\s+F/);
  });

  it("relays the HTTP proxy port with tag H, CONNECT included, and exits with the command's status", async () => {
    const before = gateway.tags.length;
    const ran = await inSandbox(`curl -sS -x http://127.0.0.1:3128 http://example.test/ && curl -sS -p -x http://127.0.0.1:3128 http://example.test/tunneled && exit 7`);
    assert.equal(ran.code, 7, ran.stderr);
    assert.equal(ran.stdout, CANNED_BODY.repeat(2));
    assert.deepEqual(gateway.tags.slice(before), ["H", "H"]);
  });

  it("relays SOCKS5 with tag S, names resolved by the gateway (socks5h)", async () => {
    const before = gateway.tags.length;
    const ran = await inSandbox(`curl -sS --socks5-hostname 127.0.0.1:1080 http://example.test/ && ALL_PROXY=socks5h://127.0.0.1:1080 curl -sS http://example.test/`);
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout, CANNED_BODY.repeat(2));
    assert.deepEqual(gateway.tags.slice(before), ["S", "S"]);
    assert.deepEqual(gateway.socksTargets.slice(-2), ["example.test", "example.test"]);
  });

  it("answers DNS over UDP (one framed upstream query per datagram) and over TCP with tag D", async () => {
    const query = (name: string): string => {
      const header = "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00";
      return header + name.split(".").map((label) => `\\x${label.length.toString(16).padStart(2, "0")}${label}`).join("") + "\\x00\\x00\\x01\\x00\\x01";
    };
    const client = (transport: "udp" | "tcp", name: string): string =>
      `${process.execPath} -e '
        const q = Buffer.from("${query(name)}", "latin1");
        const show = (a) => console.log(a.readUInt16BE(0).toString(16), [...a.subarray(a.length - 4)].join("."));
        if ("${transport}" === "udp") {
          const s = require("node:dgram").createSocket("udp4");
          s.on("message", (a) => { show(a); s.close(); });
          s.send(q, 53, "127.0.0.1");
        } else {
          const s = require("node:net").connect(53, "127.0.0.1", () => { const l = Buffer.alloc(2); l.writeUInt16BE(q.length); s.write(Buffer.concat([l, q])); });
          let b = Buffer.alloc(0);
          s.on("data", (d) => { b = Buffer.concat([b, d]); if (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) { show(b.subarray(2)); s.end(); } });
        }'`;
    const busybox = spawnSync("sh", ["-c", "command -v busybox"]).status === 0;
    const script = [client("udp", "example.test"), client("tcp", "tcp.example.test"), busybox ? "busybox nslookup nslookup.example.test 127.0.0.1" : "true"].join(" && ");
    const ran = await inSandbox(script);
    assert.equal(ran.code, 0, ran.stderr);
    const address = ANSWER_ADDRESS.join(".");
    assert.match(ran.stdout, new RegExp(`^1234 ${address}\\n1234 ${address}\\n`));
    if (busybox) assert.match(ran.stdout, new RegExp(`Address:\\s+${address.replace(/\./g, "\\.")}`));
    assert.ok(gateway.dnsNames.includes("example.test") && gateway.dnsNames.includes("tcp.example.test"), gateway.dnsNames.join(","));
    if (busybox) assert.ok(gateway.dnsNames.includes("nslookup.example.test"));
  });

  it("passes a half-close on: the gateway answers after the client's EOF", async () => {
    const ran = await inSandbox(`${process.execPath} -e '
      const s = require("node:net").connect(1080, "127.0.0.1", () => s.end("not socks, ".repeat(10000)));
      s.pipe(process.stdout);'`);
    assert.equal(ran.code, 0, ran.stderr);
    const sent = Buffer.from("not socks, ".repeat(10000));
    assert.equal(ran.stdout, `received ${sent.length} ${createHash("sha256").update(sent).digest("hex")}\n`);
  });

  it("serves many connections at once", async () => {
    gateway.barrier = 50;
    try {
      const ran = await inSandbox(`for i in $(seq 50); do curl -sS --max-time 60 -x http://127.0.0.1:3128 http://example.test/wait > wait.$i & done; wait; cat wait.*; rm wait.*`);
      assert.equal(ran.code, 0, ran.stderr);
      assert.equal(ran.stdout, "released with 50 waiting\n".repeat(50));
    } finally {
      gateway.barrier = 1;
    }
  });

  it("carries 100 MiB each way intact", async () => {
    gateway.big = randomBytes(100 * 1024 * 1024);
    const hash = createHash("sha256").update(gateway.big).digest("hex");
    const file = join(root, "upload.bin");
    await writeFile(file, gateway.big);
    try {
      const down = await inSandbox(`curl -sS -x http://127.0.0.1:3128 http://example.test/big | sha256sum`);
      assert.equal(down.code, 0, down.stderr);
      assert.equal(down.stdout.split(" ")[0], hash);
      const direct = await inSandbox(`curl -sS --unix-socket ${join(root, "direct.sock")} http://example.test/big | sha256sum`);
      assert.equal(direct.stdout.split(" ")[0], hash);
      const up = await inSandbox(`curl -sS -x http://127.0.0.1:3128 -T ${file} http://example.test/upload`);
      assert.equal(up.code, 0, up.stderr);
      assert.equal(up.stdout, `${gateway.big.length} ${hash}\n`);
      process.stdout.write(`# 100 MiB download: ${Math.round(down.ms)} ms through the forwarder, ${Math.round(direct.ms)} ms straight to the unix socket; upload ${Math.round(up.ms)} ms\n`);
    } finally {
      gateway.big = Buffer.alloc(0);
      await rm(file, { force: true });
    }
  });

  it("exits like its command: codes, signals, a missing command; passes SIGTERM on; leaks no fds", async () => {
    assert.equal((await inSandbox("exit 0")).code, 0);
    assert.equal((await inSandbox("exit 255")).code, 255);
    assert.equal((await inSandbox("kill -KILL $$")).code, 128 + 9);
    const missing = await new Promise<number | null>((resolve) => spawn("unshare", ["-rn", forwarder, "--unix", socket, "--", "/nonexistent/cmd"]).on("close", resolve));
    assert.equal(missing, 127);
    // The same fds as the command gets without the forwarder (this process may have inherited some).
    const fds = await inSandbox("ls /proc/$$/fd");
    const without = spawnSync("unshare", ["-rn", "sh", "-c", "ls /proc/$$/fd"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).stdout;
    assert.deepEqual(fds.stdout.trim().split(/\s+/).sort(), without.trim().split(/\s+/).sort());
    assert.ok(fds.stdout.trim().split(/\s+/).includes("2"));
    const trapped = await inSandbox(`trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done`, {
      onStdout: (text, child) => {
        if (text === "ready\n") child.kill("SIGTERM");
      },
    });
    assert.equal(trapped.code, 42);
    assert.equal(trapped.stdout, "ready\ngot TERM\n");
  });

  it("goes on without DNS, with one warning, when port 53 cannot be had", async () => {
    const ran = await inSandbox(`curl -sS -x http://127.0.0.1:3128 http://example.test/`, { prefix: ["setpriv", "--bounding-set", "-net_bind_service", "--inh-caps", "-net_bind_service"] });
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout, CANNED_BODY);
    assert.equal(ran.stderr.trim().split("\n").length, 1, ran.stderr);
    assert.match(ran.stderr, /warning: cannot listen on 127\.0\.0\.1:53/);
  });

  it("--stdio relays one connection as QEMU hands it over (the same socket as stdin, stdout and stderr)", async () => {
    const pair = createServer();
    await new Promise<void>((resolve) => pair.listen(join(root, "pair.sock"), resolve));
    const accepted = new Promise<Socket>((resolve) => pair.once("connection", resolve));
    const client = (await import("node:net")).connect(join(root, "pair.sock"));
    const serverSide = await accepted;
    const child = spawn(forwarder, ["--stdio", socket], { stdio: [serverSide, serverSide, serverSide] });
    serverSide.destroy();
    pair.close();
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    let answer = "";
    client.on("data", (chunk: Buffer) => (answer += chunk.toString("utf8")));
    const ended = new Promise<void>((resolve) => client.on("end", resolve));
    client.write("H");
    client.write("GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
    await ended;
    client.end();
    assert.match(answer, /^HTTP\/1\.1 200 OK/);
    assert.ok(answer.endsWith(CANNED_BODY), answer);
    assert.equal(await exited, 0);
  });
});
