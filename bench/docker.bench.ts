/**
 * Sandbox cost per step of the docker and gvisor runtimes against the bare substrate, side by side
 * in one run: `docker run --rm --network none IMAGE true` (and with `--runtime=runsc`) versus one
 * `exec` of our sandbox running `true` in the same image (create, attach, start, wait, remove).
 * Runs are interleaved so drift in the machine's load hits both alike. Target: ratio <= 1.10.
 * Then whole jobs: a 3-step job on a small repository through a real coordinator and executor,
 * submit to completed, beside three bare `docker run`s.
 *   scripts/bench.sh docker          (BENCH_RUNS=30 for more samples)
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/logger.ts";
import { DockerClient } from "../src/runtimes/docker/client.ts";
import { DockerRuntime } from "../src/runtimes/docker/index.ts";
import { GvisorRuntime } from "../src/runtimes/gvisor/index.ts";
import { sandboxLabels, stepScript, type Runtime } from "../src/runtimes/index.ts";
import { startCluster } from "../test/helpers/cluster.ts";
import { median, percentile } from "./lib.ts";
import { timeWholeJobs } from "./whole-job.ts";

const IMAGE = "airlock-test/busybox";
const SOCKET = (process.env.DOCKER_HOST ?? "/var/run/docker.sock").replace(/^unix:\/\//, "");
const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const JOB_RUNS = Number(process.env.BENCH_JOB_RUNS ?? 5);
const RUNSC = process.env.AIRLOCK_GVISOR_RUNTIME ?? "runsc";
// Debian's client matches the daemon it ships with; any `docker` on PATH otherwise.
const DOCKER_CLI = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

async function timed(action: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await action();
  return performance.now() - started;
}

function bareRun(runtime: string | undefined): Promise<void> {
  const args = ["run", "--rm", "--network", "none", ...(runtime ? [`--runtime=${runtime}`] : []), IMAGE, "true"];
  return new Promise((resolve, reject) => {
    const child = spawn(DOCKER_CLI, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`docker ${args.join(" ")} exited ${code}: ${stderr}`))));
  });
}

/**
 * What `docker run --rm --network none IMAGE true` asks of the daemon, over the API without the
 * CLI: splits our gain into "no CLI process" and "our container config" (no network sandbox, no
 * log file).
 */
function apiRun(client: DockerClient, runtime: string | undefined): () => Promise<void> {
  return async () => {
    const id = await client.createContainer(`airlock-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, {
      Image: IMAGE,
      Cmd: ["true"],
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { NetworkMode: "none", ...(runtime ? { Runtime: runtime } : {}) },
    });
    const [socket, waitExit] = await Promise.all([client.attach(id), client.waitNextExit(id)]);
    socket.resume();
    await client.start(id);
    const result = await waitExit();
    socket.destroy();
    await client.remove(id);
    if (result.StatusCode !== 0) throw new Error(`bare API run exited ${result.StatusCode}`);
  };
}

async function stepRunner(runtime: Runtime, root: string, jobId: number): Promise<() => Promise<void>> {
  const workspace = join(root, `job-${jobId}`);
  await mkdir(workspace, { recursive: true });
  const sandbox = await runtime.createSandbox(
    { jobId, attempt: 1, executorName: "bench", workspace, scratchDir: join(root, `scratch-${jobId}`), resources: {}, labels: sandboxLabels("bench", jobId, 1), logger: silentLogger },
    new AbortController().signal,
  );
  const step = { key: "bench", image: IMAGE, commands: ["true"], dir: ".", env: {} };
  return async () => {
    const outcome = await sandbox.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => undefined }, new AbortController().signal);
    if (outcome.exitCode !== 0) throw new Error(`step failed: ${JSON.stringify(outcome)}`);
  };
}

async function perStep(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "airlock-bench-docker-"));
  const client = new DockerClient({ socketPath: SOCKET });
  const variants = [
    { name: "runc", bare: () => bareRun(undefined), api: apiRun(client, undefined), ours: await stepRunner(new DockerRuntime({ host: SOCKET, logger: silentLogger }), root, 900_001) },
    { name: "runsc", bare: () => bareRun(RUNSC), api: apiRun(client, RUNSC), ours: await stepRunner(new GvisorRuntime({ host: SOCKET, ociRuntime: RUNSC, logger: silentLogger }), root, 900_002) },
  ];
  const samples = new Map(variants.map((variant) => [variant.name, { bare: [] as number[], api: [] as number[], ours: [] as number[] }]));
  for (const variant of variants) {
    await variant.bare();
    await variant.api();
    await variant.ours();
  }
  for (let run = 0; run < RUNS; run += 1) {
    for (const variant of variants) {
      const bucket = samples.get(variant.name);
      if (!bucket) continue;
      // Alternate which goes first, so neither always runs right after the other's teardown.
      if (run % 2 === 0) {
        bucket.bare.push(await timed(variant.bare));
        bucket.api.push(await timed(variant.api));
        bucket.ours.push(await timed(variant.ours));
      } else {
        bucket.ours.push(await timed(variant.ours));
        bucket.api.push(await timed(variant.api));
        bucket.bare.push(await timed(variant.bare));
      }
    }
  }
  await rm(root, { recursive: true, force: true });
  await client.close();
  console.log(`Per step: \`true\` in ${IMAGE}, ${RUNS} interleaved runs each (ms)\n`);
  console.log("| OCI runtime | bare `docker run --rm --network none` median (p90) | same calls over the API, no CLI, median (p90) | airlock step median (p90) | ratio airlock / bare | target |");
  console.log("|---|---|---|---|---|---|");
  for (const [name, bucket] of samples) {
    const ratio = median(bucket.ours) / median(bucket.bare);
    const cell = (values: number[]) => `${median(values).toFixed(0)} (${percentile(values, 90).toFixed(0)})`;
    console.log(`| ${name} | ${cell(bucket.bare)} | ${cell(bucket.api)} | ${cell(bucket.ours)} | ${ratio.toFixed(2)} | ${ratio <= 1.1 ? "met (<= 1.10)" : "MISSED (> 1.10)"} |`);
  }
}

async function wholeJob(): Promise<void> {
  console.log(`\nWhole job: 3 steps (sed, grep, wc) on a 3-file repository, submit -> completed, ${JOB_RUNS} runs (ms)\n`);
  console.log("| runtime | job median | job min | steps median (sum of step durations) | 3 bare `docker run`s median |");
  console.log("|---|---|---|---|---|");
  for (const [runtime, ociRuntime] of [
    ["docker", undefined],
    ["gvisor", RUNSC],
  ] as const) {
    const cluster = await startCluster({ runtime, executorArgs: ["--docker-host", SOCKET, "--gvisor-runtime", RUNSC] });
    try {
      const { jobs, steps } = await timeWholeJobs(cluster, runtime === "docker" ? "container" : "gvisor", IMAGE, JOB_RUNS);
      const bare: number[] = [];
      for (let run = 0; run < JOB_RUNS; run += 1) {
        bare.push(await timed(async () => {
          for (let step = 0; step < 3; step += 1) await bareRun(ociRuntime);
        }));
      }
      console.log(`| ${runtime} | ${median(jobs).toFixed(0)} | ${Math.min(...jobs).toFixed(0)} | ${median(steps).toFixed(0)} | ${median(bare).toFixed(0)} |`);
    } finally {
      await cluster.close();
    }
  }
}

const client = new DockerClient({ socketPath: SOCKET });
try {
  await client.ping();
  if (!(await client.imageExists(IMAGE))) throw new Error(`image ${IMAGE} is missing (scripts/test-images.sh imports it)`);
} catch (error) {
  console.log(`docker bench skipped: ${(error as Error).message}`);
  process.exit(0);
} finally {
  await client.close();
}
await perStep();
await wholeJob();
