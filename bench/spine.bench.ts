/**
 * The spine's figures (issue 2), shell runtime, one machine:
 * - pickup latency: job queued -> first step started on an idle executor (coordinator clock),
 *   beside the wait a 1 s poll interval alone costs (Sourcegraph's executors; GitLab's is 3 s);
 * - throughput of no-op jobs with --max-jobs 8, beside running the same `true` steps bare;
 * - log bytes on the wire (counted by a loopback proxy) per byte produced, for 50 MiB of output;
 * - idle RSS of the executor and the coordinator.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { ApiClient } from "../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type ManagedProcess } from "../src/cli/local-cluster.ts";
import { baseEnv, ENTRY, makeRepo, tempDir, waitForJob } from "../test/helpers/cluster.ts";
import { bareShellRate, countingProxy, median, percentile, printTable, rssMiB } from "./lib.ts";

const PICKUP_JOBS = Number(process.env.BENCH_PICKUP_JOBS ?? 60);
const THROUGHPUT_JOBS = Number(process.env.BENCH_THROUGHPUT_JOBS ?? 200);
const LOG_BYTES = 50 * 1024 * 1024;

const dir = await tempDir("airlock-bench-");
const coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir: join(dir, "coordinator"), env: baseEnv, extraArgs: ["--log-level", "warn"] });
const api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
const processes: ManagedProcess[] = [coordinator];

function executor(name: string, url: string, args: string[]): ManagedProcess {
  const process = startAirlock(ENTRY, ["executor", "run", "--url", url, "--runtime", "shell", "--data", join(dir, name), "--name", name, "--log-format", "json", ...args], {
    env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken },
    logFile: join(dir, `${name}.log`),
  });
  processes.push(process);
  return process;
}

async function waitForExecutor(name: string): Promise<void> {
  for (let tries = 0; tries < 200; tries += 1) {
    if ((await api.executors()).some((candidate) => candidate.name === name)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`executor ${name} never showed up`);
}

async function pickup(queue: string, spec: Record<string, unknown>, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let index = 0; index < count + 3; index += 1) {
    await new Promise((resolve) => setTimeout(resolve, 30));
    const job = await waitForJob(api, (await api.submit({ ...spec, queue, isolation: "none" })).id);
    const step = job.steps[0];
    if (job.state !== "completed" || !step?.startedAt) throw new Error(`job ${job.id} ${job.state}: ${job.failureMessage}`);
    if (index >= 3) latencies.push(Date.parse(step.startedAt) - Date.parse(job.queuedAt));
  }
  return latencies;
}

try {
  const rows: (string | number)[][] = [];
  const idle = executor("pickup", coordinator.url, ["--queues", "pickup"]);
  await waitForExecutor("pickup");
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const executorIdleRss = rssMiB(idle.child.pid ?? 0);
  const coordinatorIdleRss = rssMiB(coordinator.child.pid ?? 0);

  const empty = await pickup("pickup", { steps: [{ commands: ["true"] }] }, PICKUP_JOBS);
  await api.addRepository("bench/small", await makeRepo(join(dir, "repo"), { "README.md": "bench\n", "src/a.txt": "a\n".repeat(100) }));
  const withRepo = await pickup("pickup", { repository: "bench/small", steps: [{ commands: ["true"] }] }, Math.ceil(PICKUP_JOBS / 2));
  const pollWait = 500;
  rows.push(["pickup p50, empty workspace (ms)", median(empty), pollWait, median(empty) / pollWait, "<= 50 ms"]);
  rows.push(["pickup p95, empty workspace (ms)", percentile(empty, 95), pollWait, percentile(empty, 95) / pollWait, ""]);
  rows.push(["pickup p50, clone of a small repo (ms)", median(withRepo), pollWait, median(withRepo) / pollWait, ""]);
  rows.push(["pickup p95, clone of a small repo (ms)", percentile(withRepo, 95), pollWait, percentile(withRepo, 95) / pollWait, ""]);

  executor("throughput", coordinator.url, ["--queues", "throughput", "--max-jobs", "8"]);
  await waitForExecutor("throughput");
  const started = performance.now();
  const ids = await Promise.all(Array.from({ length: THROUGHPUT_JOBS }, async () => (await api.submit({ queue: "throughput", isolation: "none", steps: [{ commands: ["true"] }] })).id));
  // One list request every 20 ms rather than a poll per job, so watching costs the coordinator little.
  for (;;) {
    const done = await api.listJobs({ queue: "throughput", state: "completed", limit: 500 });
    if (done.length >= ids.length) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  const ours = THROUGHPUT_JOBS / seconds;
  const bare = await bareShellRate(THROUGHPUT_JOBS, 8);
  rows.push([`no-op jobs/s, --max-jobs 8 (${THROUGHPUT_JOBS} jobs)`, ours, bare, ours / bare, "bare: sh -c true x8"]);

  const proxy = await countingProxy(Number(new URL(coordinator.url).port));
  executor("logs", `http://127.0.0.1:${proxy.port}`, ["--queues", "logs", "--heartbeat-interval", "5s"]);
  await waitForExecutor("logs");
  await new Promise((resolve) => setTimeout(resolve, 500));
  proxy.reset();
  const logStart = performance.now();
  const logJob = await waitForJob(
    api,
    (await api.submit({ queue: "logs", isolation: "none", steps: [{ key: "flood", commands: [`yes 'a line of build output, 40 bytes long.' | head -c ${LOG_BYTES}`] }] })).id,
    undefined,
    300_000,
  );
  const logSeconds = (performance.now() - logStart) / 1000;
  const sent = proxy.sent();
  await proxy.close();
  // What the step produced: 50 MiB from `yes`, plus whatever `yes` says on stderr when `head` closes the pipe.
  const produced = logJob.steps[0]?.size ?? 0;
  if (produced < LOG_BYTES) throw new Error(`stored ${produced} of ${LOG_BYTES} log bytes`);
  rows.push(["log bytes sent / produced (50 MiB)", sent / produced, 1.05, sent / produced / 1.05, "all executor->coordinator bytes"]);
  rows.push(["50 MiB of output shipped in (s)", logSeconds, "", "", `${(LOG_BYTES / 1024 / 1024 / logSeconds).toFixed(0)} MiB/s`]);

  rows.push(["executor RSS, idle (MiB)", executorIdleRss, 80, executorIdleRss / 80, "target <= 80"]);
  rows.push(["coordinator RSS, idle (MiB)", coordinatorIdleRss, "", "", ""]);
  printTable(["measure", "airlock", "peer / bare / target", "ratio", "note"], rows);
  console.log(`\npeer pickup: a 1 s poll interval (Sourcegraph executors) waits 500 ms on average before any work; GitLab's 3 s poll waits 1500 ms.`);
} finally {
  await api.close();
  for (const process of processes.reverse()) await process.stop(5000);
  await rm(dir, { recursive: true, force: true });
}
