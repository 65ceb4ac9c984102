/**
 * Egress end to end, in every sandboxing runtime: a real coordinator, a real executor inside the
 * test's own closed world (test/egress/world.ts: no route off this machine), real traffic.
 * A step reaches the "public" host (192.0.2.10, allowed for this test by --egress-allow) over
 * HTTP, HTTPS (CONNECT) and SOCKS5 through the gateway and gets the right bytes; every attempt
 * at something internal fails with a clear message and is listed in egress.json with its verdict:
 * private and metadata hosts, the executor's loopback, the coordinator, every numeric spelling of
 * loopback, a name that resolves to a private address, and direct connections that bypass the
 * proxy. `network: none` gets nothing; the byte cap stops a download and names the limit; a job's
 * own allow list narrows what it may reach and cannot widen it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { freePort, startAirlock, waitForHealthy, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { readTokenFile } from "../../src/common/token-files.ts";
import { EgressRecord, type JobView } from "../../src/protocol/index.ts";
import { baseEnv, ENTRY, logText, waitForJob } from "../helpers/cluster.ts";
import { runtimeUnavailable, SANDBOX_RUNTIMES, startWorldExecutor, type WorldExecutor } from "../egress/world-executor.ts";
import { worldFileSha256 } from "../egress/world-file.ts";
import { createWorld, LOOPBACK_PORT, METADATA, PRIVATE, PUBLIC, worldUnavailable, type EgressWorld } from "../egress/world.ts";

const NET_IMAGE = "airlock-test/net";
const worldSkip = worldUnavailable();
if (worldSkip) process.stdout.write(`# SKIP egress end-to-end: ${worldSkip}\n`);

/** A step that exits 0 only if every one of its probes was refused; each probe prints its verdict. */
function refusedScript(coordinator: string): string[] {
  const numeric = ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]", "[::1]", "[::ffff:7f00:1]"];
  return [
    "set -u; fail=0",
    'P="$HTTP_PROXY"',
    // curl exits non-zero on a refusal (403 from the proxy, or a failed connect).
    'refused() { label=$1; shift; if out=$("$@" 2>&1); then echo "REACHED $label: $out"; fail=1; else echo "refused $label: $(echo "$out" | tail -n 1)"; fi; }',
    // A raw request to the proxy: refused if the answer is not the service's greeting.
    'raw() { out=$(printf "$2" | nc -w 5 127.0.0.1 3128 2>&1 | head -c 400); case "$out" in *"hello from"*) echo "REACHED $1: $out"; fail=1;; *) echo "refused $1: $(echo "$out" | head -n 1)";; esac; }',
    `refused private curl -fsS --max-time 10 -x "$P" http://${PRIVATE.address}/hello`,
    `refused private-name curl -fsS --max-time 10 -x "$P" http://${PRIVATE.name}/hello`,
    `refused metadata curl -fsS --max-time 10 -x "$P" http://${METADATA}/latest/meta-data/`,
    `refused loopback curl -fsS --max-time 10 --noproxy "" -x "$P" http://127.0.0.1:${LOOPBACK_PORT}/hello`,
    `refused localhost curl -fsS --max-time 10 --noproxy "" -x "$P" http://localhost:${LOOPBACK_PORT}/hello`,
    `refused coordinator curl -fsS --max-time 10 -x "$P" http://${coordinator}/healthz`,
    `refused connect-private curl -fsS --max-time 10 -x "$P" --cacert /work/ca.pem https://${PRIVATE.address}/hello`,
    `refused socks-private curl -fsS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://${PRIVATE.name}/hello`,
    ...numeric.map((host) => `raw "numeric ${host}" 'GET http://${host}:${LOOPBACK_PORT}/hello HTTP/1.1\\r\\nHost: ${host}\\r\\nConnection: close\\r\\n\\r\\n'`),
    ...numeric.map((host) => `raw "connect ${host}" 'CONNECT ${host}:${LOOPBACK_PORT} HTTP/1.1\\r\\nHost: ${host}:${LOOPBACK_PORT}\\r\\n\\r\\nGET /hello HTTP/1.0\\r\\n\\r\\n'`),
    // Around the proxy: the sandbox has no route but to the gateway.
    `refused direct-public curl -fsS --max-time 5 --noproxy "*" http://${PUBLIC.address}/hello`,
    `refused direct-private curl -fsS --max-time 5 --noproxy "*" http://${PRIVATE.address}/hello`,
    `refused direct-coordinator curl -fsS --max-time 5 --noproxy "*" http://${coordinator}/healthz`,
    "exit $fail",
  ];
}

describe("egress end to end", { skip: worldSkip }, () => {
  let world: EgressWorld;
  let coordinator: ManagedProcess;
  let api: ApiClient;
  let url = "";
  let coordinatorHostPort = "";

  before(async () => {
    world = await createWorld();
    const port = await freePort();
    coordinatorHostPort = `${world.hostAddress}:${port}`;
    const dataDir = join(world.dir, "coordinator");
    coordinator = startAirlock(ENTRY, ["server", "--data", dataDir, "--listen", coordinatorHostPort, "--log-format", "json"], { env: baseEnv, logFile: join(world.dir, "coordinator.log") });
    url = `http://${coordinatorHostPort}`;
    await waitForHealthy(url, coordinator);
    api = new ApiClient({ url, token: readTokenFile(dataDir, "api") ?? "" });
  });

  after(async () => {
    await api?.close();
    await coordinator?.stop(5000);
    await world?.close();
  });

  for (const runtime of SANDBOX_RUNTIMES) {
    describe(runtime, () => {
      let executor: WorldExecutor | undefined;
      let skip: string | undefined;

      before(async () => {
        skip = await runtimeUnavailable(runtime);
        if (skip) return;
        executor = startWorldExecutor(world, { url, token: readTokenFile(join(world.dir, "coordinator"), "executor") ?? "", runtime });
      });

      after(async () => {
        await executor?.stop();
      });

      const submit = (spec: Record<string, unknown>): Promise<JobView> => api.submit({ queue: runtime, isolation: "namespace", maxAttempts: 1, ...spec });
      const egressRecord = async (job: JobView): Promise<EgressRecord> => EgressRecord.parse(JSON.parse((await api.artifactBytes(job.id, "egress.json")).toString("utf8")));
      const wait = (job: JobView): Promise<JobView> =>
        Promise.race([waitForJob(api, job.id, undefined, 180_000), ...(executor ? [executor.died] : [])]);

      it("reaches the public host over HTTP, HTTPS and SOCKS5; everything internal is refused and recorded", async (t) => {
        if (skip) return t.skip(skip);
        const job = await wait(
          await submit({
            files: { "ca.pem": { content: world.caPem } },
            steps: [
              {
                key: "public",
                image: NET_IMAGE,
                commands: [
                  `curl -fsS http://${PUBLIC.name}/file -o http.bin`,
                  `curl -fsS --cacert ca.pem https://${PUBLIC.name}/file -o https.bin`,
                  `curl -fsS --socks5-hostname 127.0.0.1:1080 http://${PUBLIC.name}/hello`,
                  "sha256sum http.bin https.bin",
                  // DNS, answered by the gateway: public names resolve, private answers are withheld.
                  `getent hosts ${PUBLIC.name}`,
                  `if getent hosts ${PRIVATE.name}; then echo "RESOLVED ${PRIVATE.name}"; exit 1; fi`,
                ],
              },
              { key: "refused", image: NET_IMAGE, commands: refusedScript(coordinatorHostPort) },
            ],
          }),
        );
        const publicLog = await logText(api, job, "public");
        const refusedLog = await logText(api, job, "refused");
        assert.equal(job.state, "completed", `${job.failureMessage}\n${publicLog}\n${refusedLog}`);
        const sha = worldFileSha256();
        assert.match(publicLog, new RegExp(`${sha}\\s+http.bin`));
        assert.match(publicLog, new RegExp(`${sha}\\s+https.bin`));
        assert.match(publicLog, /hello from 192\.0\.2\.10:80/);
        assert.match(publicLog, /192\.0\.2\.10\s+public\.test/, "the gateway answered the name");
        assert.doesNotMatch(refusedLog, /REACHED/);
        assert.match(refusedLog, /cloud metadata/i, "the metadata refusal names it");
        assert.match(refusedLog, /RFC 1918|private/i);
        const record = await egressRecord(job);
        const refusedHosts = new Set(record.connections.filter((entry) => entry.verdict === "refused").map((entry) => entry.host));
        for (const host of [PRIVATE.address, PRIVATE.name, METADATA, "127.0.0.1", "localhost", world.hostAddress, "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001"]) {
          assert.ok(refusedHosts.has(host), `egress.json lists the refused ${host}: ${[...refusedHosts].join(", ")}`);
        }
        const allowed = record.connections.filter((entry) => entry.verdict === "allowed");
        assert.ok(allowed.some((entry) => entry.protocol === "http" && entry.address === PUBLIC.address && entry.bytesIn > 3_000_000));
        assert.ok(allowed.some((entry) => entry.protocol === "connect" && entry.port === 443 && entry.bytesIn > 3_000_000));
        assert.ok(allowed.some((entry) => entry.protocol === "socks"));
        assert.ok(
          allowed.filter((entry) => entry.protocol !== "dns").every((entry) => entry.address === PUBLIC.address),
          "nothing but the public host was connected",
        );
        assert.ok(record.connections.some((entry) => entry.protocol === "dns" && entry.host === PRIVATE.name && entry.verdict === "refused"), "the private answer was withheld and recorded");
        assert.match(publicLog, /\[airlock\] egress: \d+ connection/);
      });

      it("gives network: none jobs nothing at all", async (t) => {
        if (skip) return t.skip(skip);
        const job = await wait(
          await submit({
            network: "none",
            steps: [{ image: NET_IMAGE, commands: ['[ -z "${HTTP_PROXY:-}" ]', `if curl -fsS --max-time 5 -x http://127.0.0.1:3128 http://${PUBLIC.address}/hello; then exit 1; fi`, `if curl -fsS --max-time 5 http://${PUBLIC.address}/hello; then exit 1; fi`] }],
          }),
        );
        assert.equal(job.state, "completed", job.failureMessage ?? "");
        await assert.rejects(() => api.artifactBytes(job.id, "egress.json"), "no gateway, no record");
      });

      it("stops a download at the job's byte cap and names the limit; a job's allow list only narrows", async (t) => {
        if (skip) return t.skip(skip);
        const capped = await wait(await submit({ resources: { egress: "1m" }, steps: [{ image: NET_IMAGE, commands: [`curl -fsS http://${PUBLIC.name}/bytes/8000000 -o big.bin`] }] }));
        assert.equal(capped.state, "failed");
        const log = await logText(api, capped, "step-1");
        assert.match(log, /resources\.egress/);
        assert.match((await egressRecord(capped)).limitHit ?? "", /resources\.egress/);
        const narrowed = await wait(
          await submit({
            network: { allow: [`${PUBLIC.name}:443`, "10.0.0.0/8"] },
            files: { "ca.pem": { content: world.caPem } },
            steps: [
              {
                image: NET_IMAGE,
                commands: [
                  `curl -fsS --cacert ca.pem https://${PUBLIC.name}/hello`,
                  `if curl -fsS --max-time 10 http://${PUBLIC.name}/hello; then echo "REACHED port 80"; exit 1; fi`,
                  `if curl -fsS --max-time 10 http://${PRIVATE.address}/hello; then echo "REACHED private"; exit 1; fi`,
                ],
              },
            ],
          }),
        );
        assert.equal(narrowed.state, "completed", `${narrowed.failureMessage}\n${await logText(api, narrowed, "step-1")}`);
      });
    });
  }
});
