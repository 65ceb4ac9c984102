/**
 * Versions across a fleet: `airlock version`, executors reporting theirs (and their protocol) in
 * the executors view, and a coordinator refusing an executor of a protocol it does not speak, with
 * the executor printing why and exiting non-zero.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { systemClock } from "../../src/common/clock.ts";
import { HttpCoordinatorClient } from "../../src/executor/client.ts";
import { resolveExecutorConfig } from "../../src/executor/config.ts";
import { Executor } from "../../src/executor/executor.ts";
import { AIRLOCK_VERSION, IncompatibleProtocolError, PROTOCOL_VERSION, servedProtocols, type ExecutorView } from "../../src/protocol/index.ts";
import { ShellRuntime } from "../../src/runtimes/shell/index.ts";
import { baseEnv, ENTRY, http, ROOT, startCluster, type Cluster } from "../helpers/cluster.ts";

const run = promisify(execFile);
const PACKAGE_VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

async function airlock(args: string[], env: Record<string, string | undefined> = baseEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [ENTRY, ...args], { env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

describe("airlock version", () => {
  it("prints the release from package.json, the protocol and the commit", async () => {
    assert.equal(AIRLOCK_VERSION, PACKAGE_VERSION, "src/protocol/version.ts follows package.json");
    const long = await airlock(["--version"]);
    assert.equal(long.code, 0, long.stderr);
    assert.deepEqual(long, { ...(await airlock(["version"])), code: 0 }, "--version is `airlock version`");
    assert.match(long.stdout, new RegExp(`^airlock ${PACKAGE_VERSION.replaceAll(".", "\\.")}`));
    assert.match(long.stdout, new RegExp(`executor protocol ${PROTOCOL_VERSION}\\b`));
    const json = JSON.parse((await airlock(["version", "--json"])).stdout) as { version: string; protocolVersion: number; commit: string | null };
    assert.equal(json.version, PACKAGE_VERSION);
    assert.equal(json.protocolVersion, PROTOCOL_VERSION);
    const fromSources = ENTRY.endsWith(".ts");
    if (fromSources && existsSync(join(ROOT, ".git"))) {
      const head = (await run("git", ["-C", ROOT, "rev-parse", "HEAD"])).stdout.trim();
      assert.equal(json.commit, head, "run from a checkout, the commit is its HEAD");
      assert.match(long.stdout, new RegExp(`commit ${head}`));
    } else if (!fromSources) {
      const recorded = JSON.parse(readFileSync(join(ROOT, "dist", "build-info.json"), "utf8")) as { commit: string | null };
      assert.equal(json.commit, recorded.commit, "a build reports the commit it recorded");
    }
  });
});

describe("executor versions and protocol refusal", () => {
  let cluster: Cluster;
  let executorAuth: Record<string, string>;
  const identity = (name: string, extra: Record<string, unknown>) => ({ executorName: name, hostname: "h", version: "9.9.9", runtime: "shell", isolation: ["none"], network: "internet", queues: ["versions"], jobIds: [], ...extra });

  before(async () => {
    cluster = await startCluster({ executors: 1 });
    executorAuth = { authorization: `token-executor ${cluster.coordinator.executorToken}`, "content-type": "application/json" };
  });
  after(async () => {
    await cluster.close();
  });

  async function executors(): Promise<ExecutorView[]> {
    return cluster.api.executors();
  }

  it("shows each executor's version and protocol in the executors view", async () => {
    let real: ExecutorView | undefined;
    for (let tries = 0; tries < 200 && !real; tries += 1) {
      real = (await executors()).find((executor) => executor.name === "test-executor-1");
      if (!real) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(real, "the running executor registered");
    assert.match(real.version, new RegExp(`^${PACKAGE_VERSION.replaceAll(".", "\\.")}(\\+[0-9a-f]{12}(\\.dirty)?)?$`));
    assert.equal(real.protocolVersion, PROTOCOL_VERSION);
    // An executor from before protocol versions were sent says nothing: it speaks protocol 1.
    const old = await http(`${cluster.coordinator.url}/.executors/heartbeat`, { method: "POST", headers: executorAuth, body: JSON.stringify(identity("older", {})) });
    assert.equal(old.status, 200, old.text);
    const listed = (await executors()).find((executor) => executor.name === "older");
    assert.deepEqual([listed?.version, listed?.protocolVersion], ["9.9.9", 1]);
  });

  it("refuses an executor of another protocol with a 409 naming both versions, storing nothing of it", async () => {
    const cases: [string, number, RegExp][] = [
      ["/.executors/heartbeat", PROTOCOL_VERSION + 1, /upgrade the coordinators first/],
      ["/.executors/dequeue", PROTOCOL_VERSION + 1, /upgrade the coordinators first/],
      ["/.executors/heartbeat", 0, /upgrade this executor/],
    ];
    for (const [path, protocolVersion, advice] of cases) {
      const reply = await http(`${cluster.coordinator.url}${path}`, { method: "POST", headers: executorAuth, body: JSON.stringify(identity("from-elsewhere", { protocolVersion, waitMs: 0 })) });
      assert.equal(reply.status, 409, reply.text);
      const error = (reply.body as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "incompatible_protocol");
      assert.match(error.message, new RegExp(`"from-elsewhere" \\(Airlock 9\\.9\\.9\\) speaks executor protocol ${protocolVersion}\\b`));
      assert.match(error.message, new RegExp(`coordinator \\(Airlock ${AIRLOCK_VERSION.replaceAll(".", "\\.")}\\) speaks executor protocol ${servedProtocols()}\\b`));
      assert.match(error.message, advice);
    }
    assert.equal((await executors()).find((executor) => executor.name === "from-elsewhere"), undefined, "a refused executor is not recorded");
    const check = await http(`${cluster.coordinator.url}/.executors/auth-check`, { headers: executorAuth });
    assert.deepEqual((check.body as { protocol: unknown }).protocol, { min: 1, max: PROTOCOL_VERSION });
  });

  it("an executor of another protocol fails to start with the coordinator's reason", async () => {
    const config = resolveExecutorConfig(
      { url: cluster.coordinator.url, token: cluster.coordinator.executorToken, data: join(cluster.dir, "refused"), name: "refused-in-process", runtime: "shell" },
      baseEnv,
    );
    const client = new HttpCoordinatorClient({ urls: config.urls, executorToken: config.token, caPath: undefined, logger: silentLogger });
    const runtime = new ShellRuntime({ path: config.hostPath });
    const executor = new Executor({ config, client, runtime, logger: silentLogger, clock: systemClock, protocolVersion: PROTOCOL_VERSION + 1 });
    await assert.rejects(executor.start(), (error: unknown) => error instanceof IncompatibleProtocolError && /refused-in-process.*upgrade the coordinators first/.test(error.message));
    await client.close();
    assert.equal((await executors()).find((view) => view.name === "refused-in-process"), undefined);
  });

  it("`airlock executor run` prints the refusal and exits 1; `executor validate` reports it", async () => {
    // The real coordinator's refusal, replayed from a loopback server by a coordinator that
    // speaks only the next protocol (as a newer coordinator would).
    const refusal = await http(`${cluster.coordinator.url}/.executors/heartbeat`, { method: "POST", headers: executorAuth, body: JSON.stringify(identity("cli", { protocolVersion: 0 })) });
    assert.equal(refusal.status, 409);
    const newer = createServer((request, response) => {
      request.resume();
      const body = request.url === "/.executors/auth-check" ? { ok: true, version: "9.0.0", protocol: { min: PROTOCOL_VERSION + 1, max: PROTOCOL_VERSION + 2 }, leaseMs: 20_000 } : refusal.body;
      response.writeHead(request.url === "/.executors/auth-check" ? 200 : refusal.status, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => newer.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(newer.address() as AddressInfo).port}`;
      const common = ["--url", url, "--token", "t", "--runtime", "shell", "--data", join(cluster.dir, "cli-executor"), "--network", "none"];
      const started = await airlock(["executor", "run", ...common, "--name", "cli"]);
      assert.equal(started.code, 1, `${started.stdout}\n${started.stderr}`);
      assert.match(started.stderr, /airlock: executor "cli" \(Airlock 9\.9\.9\) speaks executor protocol 0, but this coordinator .* upgrade this executor/);
      const validated = await airlock(["executor", "validate", ...common]);
      assert.equal(validated.code, 1, validated.stdout);
      assert.match(validated.stdout, new RegExp(`FAIL .*Airlock 9\\.0\\.0 speaks executor protocols ${PROTOCOL_VERSION + 1} to ${PROTOCOL_VERSION + 2}; this executor speaks protocol ${PROTOCOL_VERSION}: upgrade this executor`));
    } finally {
      newer.close();
    }
  });
});
