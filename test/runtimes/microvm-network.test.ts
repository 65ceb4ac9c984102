/**
 * microvm with a network (SandboxSpec.network): the VM's only way out is the egress gateway, here
 * a fake one on a unix socket. A step reaches it through the proxy variables (wget) and the DNS
 * port (nslookup), many connections at once; it reaches nothing else: not QEMU's host alias
 * 10.0.2.2 (a host loopback listener would see it), not QEMU's DNS 10.0.2.3, not another port of
 * the gateway's address, not any other address, and it cannot add a route. A job without a
 * network has no network device. (The step's /proc/net/dev lists the VM's interfaces.) Boot times with and without the device are printed.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { ensureForwarder } from "../../src/egress/forwarder.ts";
import { SANDBOX_PROXY, sandboxLabels, stepScript, type Sandbox, type SandboxNetwork, type StepOutcome } from "../../src/runtimes/index.ts";
import type { MicroVmSandbox } from "../../src/runtimes/microvm/sandbox.ts";
import { ANSWER_ADDRESS, CANNED_BODY, startFakeGateway, type FakeGateway } from "../egress/fake-gateway.ts";
import { DATA_DIR, IMAGES, microvmRuntime, microvmUnavailable, qemuOfJob } from "./microvm-target.ts";

const skip = await microvmUnavailable();
if (skip) process.stdout.write(`# SKIP microvm network tests: ${skip}\n`);

const PROXY_ENV = { http_proxy: SANDBOX_PROXY.http, HTTP_PROXY: SANDBOX_PROXY.http };

async function run(box: Sandbox, commands: string[], env: Record<string, string> = {}): Promise<{ outcome: StepOutcome; output: string }> {
  const chunks: Buffer[] = [];
  const step = { key: "net", image: IMAGES.primary, commands, dir: ".", env: {} };
  const outcome = await box.exec({ step, env, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, new AbortController().signal);
  return { outcome, output: Buffer.concat(chunks).toString("utf8") };
}

/** Processes still running with `needle` in their command line (a forwarder QEMU started, say). */
function processesWith(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " ");
      if (cmdline.includes(needle)) found.push(`${pid} ${cmdline}`);
    } catch {
      // gone
    }
  }
  return found;
}

describe("microvm network", { skip }, () => {
  let root: string;
  let gateway: FakeGateway;
  let network: SandboxNetwork;
  let jobs = 0;

  const sandbox = async (withNetwork: boolean): Promise<{ box: MicroVmSandbox; jobId: number }> => {
    const jobId = 930_000 + Math.floor(Math.random() * 1000) * 10 + jobs++;
    const workspace = join(root, `job${jobId}`, "workspace");
    await mkdir(workspace, { recursive: true });
    const box = (await microvmRuntime().createSandbox(
      {
        jobId,
        attempt: 1,
        executorName: "microvm-network-test",
        workspace,
        scratchDir: join(root, `job${jobId}`, "sandbox"),
        resources: { diskBytes: 256 * 1024 * 1024, memoryBytes: 256 * 1024 * 1024 },
        labels: sandboxLabels("microvm-network-test", jobId, 1),
        network: withNetwork ? network : undefined,
        logger: silentLogger,
      },
      new AbortController().signal,
    )) as MicroVmSandbox;
    return { box, jobId };
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-microvm-net-"));
    gateway = await startFakeGateway(join(root, "gateway.sock"));
    network = { gatewaySocket: join(root, "gateway.sock"), forwarder: await ensureForwarder(DATA_DIR, silentLogger) };
  });
  after(async () => {
    await gateway.close();
    await rm(root, { recursive: true, force: true });
  });

  it("reaches the gateway through the proxy and DNS ports, many connections at once, and nothing else", async () => {
    // Were QEMU's restriction off, 10.0.2.2:<port> would be this host loopback listener.
    const hostLoopback = createServer();
    let leaked = 0;
    hostLoopback.on("connection", (socket) => {
      leaked += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => hostLoopback.listen(0, "127.0.0.1", resolve));
    const port = (hostLoopback.address() as AddressInfo).port;
    const { box, jobId } = await sandbox(true);
    try {
      const proxied = await run(box, ["cat /etc/resolv.conf", "wget -q -O- http://example.test/", "nslookup example.test", "cat /proc/net/dev"], PROXY_ENV);
      assert.equal(proxied.outcome.exitCode, 0, proxied.output);
      assert.match(proxied.output, /^nameserver 127\.0\.0\.1$/m);
      assert.ok(proxied.output.includes(CANNED_BODY), proxied.output);
      assert.match(proxied.output, new RegExp(`Address:\\s+${ANSWER_ADDRESS.join("\\.")}`));
      assert.ok(gateway.tags.includes("H") && gateway.tags.includes("D"), gateway.tags.join(""));
      assert.ok(gateway.dnsNames.includes("example.test"));
      assert.match(proxied.output, /^\s*eth0:/m);

      const parallel = 30;
      gateway.barrier = parallel;
      const started = performance.now();
      const many = await run(box, [`for i in $(seq ${parallel}); do wget -q -O wait.$i http://example.test/wait & done; wait`, "cat wait.*", "rm wait.*"], PROXY_ENV);
      const manyMs = performance.now() - started;
      gateway.barrier = 1;
      assert.equal(many.outcome.exitCode, 0, many.output);
      assert.equal(many.output, `released with ${parallel} waiting\n`.repeat(parallel));
      process.stdout.write(`# ${parallel} concurrent proxied requests through the VM's guestfwd: ${Math.round(manyMs)} ms for the step\n`);

      const blocked = await run(box, [
        "set +e",
        `nc -w 3 10.0.2.2 ${port} </dev/null && echo "LEAK: reached 10.0.2.2:${port}"`,
        `timeout 5 wget -q -O- http://10.0.2.2:${port}/ && echo "LEAK: wget to 10.0.2.2"`,
        "nc -w 3 10.0.2.3 53 </dev/null && echo 'LEAK: reached 10.0.2.3:53 over TCP'",
        "timeout 8 nslookup example.test 10.0.2.3 && echo 'LEAK: QEMU DNS answered'",
        "nc -w 3 10.0.2.100 80 </dev/null && echo 'LEAK: reached 10.0.2.100:80'",
        "nc -w 3 192.0.2.1 80 </dev/null && echo 'LEAK: reached 192.0.2.1:80'",
        "ip route add default via 10.0.2.2 && echo 'LEAK: added a default route'",
        "ip route",
        "echo checked",
      ]);
      assert.equal(blocked.outcome.exitCode, 0, blocked.output);
      assert.match(blocked.output, /checked\n$/);
      assert.doesNotMatch(blocked.output, /LEAK/, blocked.output);
      assert.doesNotMatch(blocked.output, /default/, "no default route");
      assert.equal(leaked, 0, "nothing reached the host's loopback");
      process.stdout.write(`# VM with a network device: boot ${box.vm.bootMs} ms, disks mounted ${Math.round(await box.disksReady)} ms\n`);
    } finally {
      await box.destroy();
      hostLoopback.close();
    }
    assert.deepEqual(qemuOfJob(jobId), []);
    // The executor closes a job's gateway after its VM: the forwarders QEMU started then end.
    await gateway.close();
    for (let i = 0; i < 50 && processesWith(network.gatewaySocket).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(processesWith(network.gatewaySocket), [], "no forwarder QEMU started outlives its connection");
  });

  it("gives a job without a network no network device", async () => {
    const { box, jobId } = await sandbox(false);
    try {
      const bare = await run(box, ["cat /proc/net/dev", "set +e", "timeout 5 wget -q -O- http://example.test/ && echo 'LEAK: proxy without a network'", "echo checked"], PROXY_ENV);
      assert.equal(bare.outcome.exitCode, 0, bare.output);
      assert.match(bare.output, /^\s*lo:/m);
      assert.doesNotMatch(bare.output, /eth0|LEAK/);
      process.stdout.write(`# VM without a network device: boot ${box.vm.bootMs} ms, disks mounted ${Math.round(await box.disksReady)} ms\n`);
    } finally {
      await box.destroy();
    }
    assert.deepEqual(qemuOfJob(jobId), []);
  });
});
