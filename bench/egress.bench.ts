/**
 * What the egress gateway costs, side by side in one run, inside the tests' closed world
 * (test/egress/world.ts: nothing can leave this machine):
 *   throughput   200 MiB from the world's "public" host over HTTP: curl on the host (in the
 *                world's namespace, straight to the server) vs curl in a step of each runtime,
 *                through forwarder -> gateway -> server. Target: >= 0.8 of direct.
 *   latency      time to the first byte of a tiny response, sequential requests, direct vs
 *                through the gateway; the difference of the medians is what the gateway adds to
 *                a connection. Target: p50 <= 5 ms.
 *   scripts/bench.sh egress        (BENCH_EGRESS_MIB, BENCH_EGRESS_RUNS, BENCH_EGRESS_PINGS)
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ApiClient } from "../src/cli/api-client.ts";
import { freePort, startAirlock, waitForHealthy } from "../src/cli/local-cluster.ts";
import { readTokenFile } from "../src/common/token-files.ts";
import { baseEnv, ENTRY, logText, waitForJob } from "../test/helpers/cluster.ts";
import { createWorld, PUBLIC, worldUnavailable } from "../test/egress/world.ts";
import { runtimeUnavailable, SANDBOX_RUNTIMES, startWorldExecutor, type WorldExecutor } from "../test/egress/world-executor.ts";
import { median, percentile, printTable } from "./lib.ts";

const MIB = Number(process.env.BENCH_EGRESS_MIB ?? 200);
const RUNS = Number(process.env.BENCH_EGRESS_RUNS ?? 3);
const PINGS = Number(process.env.BENCH_EGRESS_PINGS ?? 40);
const IMAGE = "airlock-test/net";
const BYTES = MIB * 1024 * 1024;

/** curl commands printing one figure per line: seconds for the download, then first-byte times. */
function probeScript(url: string, extra = ""): string {
  return [
    `for i in $(seq ${RUNS}); do curl -fsS ${extra} -o /dev/null -w 'DL %{time_total}\\n' ${url}/bytes/${BYTES}; done`,
    `for i in $(seq ${PINGS}); do curl -fsS ${extra} -o /dev/null -w 'TTFB %{time_starttransfer}\\n' ${url}/hello; done`,
  ].join("\n");
}

function figures(text: string): { download: number[]; ttfb: number[] } {
  const pick = (tag: string) => [...text.matchAll(new RegExp(`^${tag} ([0-9.]+)$`, "gm"))].map((match) => Number(match[1]) * 1000);
  return { download: pick("DL"), ttfb: pick("TTFB") };
}

async function main(): Promise<void> {
  const skip = worldUnavailable();
  if (skip) {
    console.log(`skipped: ${skip}`);
    return;
  }
  const world = await createWorld();
  const executors: WorldExecutor[] = [];
  const port = await freePort();
  const dataDir = join(world.dir, "coordinator");
  const coordinator = startAirlock(ENTRY, ["server", "--data", dataDir, "--listen", `${world.hostAddress}:${port}`, "--log-format", "json"], { env: baseEnv, logFile: join(world.dir, "coordinator.log") });
  const url = `http://${world.hostAddress}:${port}`;
  try {
    await waitForHealthy(url, coordinator);
    const api = new ApiClient({ url, token: readTokenFile(dataDir, "api") ?? "" });
    const directArgv = world.inWorld(["sh", "-c", probeScript(`http://${PUBLIC.address}`)]);
    const direct = spawnSync(directArgv[0] ?? "", directArgv.slice(1), { encoding: "utf8" });
    const bare = figures(direct.stdout);
    if (bare.download.length !== RUNS) throw new Error(`direct curl failed: ${direct.stderr}`);
    const bareDownload = median(bare.download);
    const bareTtfb = median(bare.ttfb);
    const rows: (string | number)[][] = [["direct (host, same world)", bareDownload.toFixed(0), ((BYTES / (bareDownload / 1000)) / 2 ** 20).toFixed(0), "1.00", bareTtfb.toFixed(2), percentile(bare.ttfb, 90).toFixed(2), "-"]];
    for (const runtime of SANDBOX_RUNTIMES) {
      const reason = await runtimeUnavailable(runtime);
      if (reason) {
        rows.push([runtime, "-", "-", `skipped: ${reason}`, "-", "-", "-"]);
        continue;
      }
      executors.push(startWorldExecutor(world, { url, token: readTokenFile(dataDir, "executor") ?? "", runtime, extraArgs: ["--log-level", "warn"] }));
      const job = await waitForJob(
        api,
        (await api.submit({ queue: runtime, maxAttempts: 1, steps: [{ image: IMAGE, commands: [probeScript(`http://${PUBLIC.name}`)] }] })).id,
        undefined,
        600_000,
      );
      const text = await logText(api, job, "step-1");
      const ours = figures(text);
      if (job.state !== "completed" || ours.download.length !== RUNS) {
        rows.push([runtime, "-", "-", `failed: ${job.failureMessage ?? text.slice(-300)}`, "-", "-", "-"]);
        continue;
      }
      const download = median(ours.download);
      const ttfb = median(ours.ttfb);
      rows.push([`${runtime} step via gateway`, download.toFixed(0), ((BYTES / (download / 1000)) / 2 ** 20).toFixed(0), (bareDownload / download).toFixed(2), ttfb.toFixed(2), percentile(ours.ttfb, 90).toFixed(2), (ttfb - bareTtfb).toFixed(2)]);
    }
    await api.close();
    console.log(`${MIB} MiB over HTTP from the world's public host, median of ${RUNS}; first byte of /hello, ${PINGS} sequential requests (ms)\n`);
    printTable(["column", "download ms", "MiB/s", "throughput ratio to direct (target >= 0.8)", "TTFB p50", "TTFB p90", "added by gateway p50 (target <= 5)"], rows);
  } finally {
    for (const executor of executors) await executor.stop();
    await coordinator.stop(5000);
    await world.close();
  }
}

await main();
