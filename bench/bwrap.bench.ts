/**
 * Sandbox cost per step of the bwrap runtime, side by side in one run, interleaved so that drift
 * in the machine's load hits every column alike:
 *   bare bwrap      `bwrap` with the same namespaces and mounts on the same root filesystem,
 *                   spawned from Node the same way, running `/bin/sh -c true`
 *   bare + ours     that, plus what the runtime adds to bwrap's command line (no capabilities,
 *                   read-only /proc, seccomp filter, a status fd): what bwrap itself costs for
 *                   our command line, without our orchestration
 *   airlock step    one `exec` of a bwrap sandbox running `true`: image lookup, bwrap started
 *                   by the job's launcher inside the job's cgroup, output streaming, cgroup
 *                   sweep and counters
 *   docker step     one `exec` of the docker runtime's sandbox, when a Docker daemon answers
 *   docker run      `docker run --rm --network none IMAGE true`, likewise
 * Targets: airlock step / bare bwrap <= 1.10, and under 30 ms per step.
 * Then: unpacking the image on first use, and a whole 3-step job through a coordinator.
 *   scripts/bench.sh bwrap          (BENCH_RUNS=60 for more samples)
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/logger.ts";
import { bwrapArgs, FD, flatArgv, namespaceArgs } from "../src/runtimes/bwrap/args.ts";
import { BwrapRuntime } from "../src/runtimes/bwrap/index.ts";
import { sandboxLabels, stepScript } from "../src/runtimes/index.ts";
import { TEST_IMAGES, testImagesMissing } from "../test/helpers/bwrap.ts";
import { unavailable as dockerUnavailable } from "../test/helpers/docker-api.ts";
import { startCluster } from "../test/helpers/cluster.ts";
import { DockerRuntime } from "../src/runtimes/docker/index.ts";
import { median, percentile, printTable } from "./lib.ts";
import { timeWholeJobs } from "./whole-job.ts";

const IMAGE = "airlock-test/busybox";
const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const JOB_RUNS = Number(process.env.BENCH_JOB_RUNS ?? 5);
const DOCKER_RUNS = Number(process.env.BENCH_DOCKER_RUNS ?? 15);
const DOCKER_SOCKET = process.env.AIRLOCK_DOCKER_SOCKET ?? "/var/run/docker.sock";
const DOCKER_CLI = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

async function timed(action: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await action();
  return performance.now() - started;
}

function spawnAndWait(command: string, args: string[], stdio: ("ignore" | "pipe" | number)[], onSpawn?: (child: ReturnType<typeof spawn>) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio, env: {} });
    onSpawn?.(child);
    child.stdout?.resume();
    child.on("error", reject);
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${stderr.trim().slice(0, 200)}`))));
  });
}

async function main(): Promise<void> {
  const missing = testImagesMissing();
  if (missing) {
    console.log(`SKIP: ${missing}`);
    return;
  }
  const root = await mkdtemp(join(tmpdir(), "airlock-bench-bwrap-"));
  try {
    const runtime = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "data"), images: [TEST_IMAGES], logger: silentLogger });
    const probe = await runtime.probe();
    if (!probe.usable) {
      console.log(`SKIP: bwrap is not usable here: ${probe.detail}`);
      return;
    }
    const workspace = join(root, "workspace");
    await mkdir(workspace);

    const unpackStarted = performance.now();
    const image = await runtime.images.resolve(IMAGE);
    const unpackMs = performance.now() - unpackStarted;
    const seccompFile = join(root, "data", "bwrap", `seccomp-${process.arch}.bpf`);

    const sandbox = await runtime.createSandbox(
      { jobId: 990_001, attempt: 1, executorName: "bench", workspace, scratchDir: root, resources: {}, labels: sandboxLabels("bench", 990_001, 1), logger: silentLogger },
      new AbortController().signal,
    );
    const step = { key: "bench", image: IMAGE, commands: ["true"], dir: ".", env: {} };
    const columns: { name: string; run: () => Promise<void> }[] = [
      {
        name: "bare bwrap",
        run: () =>
          spawnAndWait(
            "bwrap",
            [...namespaceArgs().slice(0, 6), "--die-with-parent", "--new-session", "--ro-bind", image.rootfs, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", workspace, "/work", "--chdir", "/work", "/bin/sh", "-c", "true"],
            ["ignore", "pipe", "pipe"],
          ),
      },
      {
        name: "bare + our flags",
        run: () => {
          const seccomp = openSync(seccompFile, "r");
          return spawnAndWait("bwrap", flatArgv(bwrapArgs({ rootfs: image.rootfs, workspace, cwd: "/work" }, "true")), ["ignore", "pipe", "pipe", "pipe", "ignore", seccomp], (child) => {
            closeSync(seccomp);
            (child.stdio[FD.status] as NodeJS.ReadableStream | null)?.resume();
          });
        },
      },
      {
        name: "airlock step",
        run: async () => {
          const outcome = await sandbox.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => undefined }, new AbortController().signal);
          if (outcome.exitCode !== 0) throw new Error(`step failed: ${JSON.stringify(outcome)}`);
        },
      },
    ];
    let dockerReason = await dockerUnavailable(DOCKER_SOCKET);
    const dockerRun = () => spawnAndWait(DOCKER_CLI, ["run", "--rm", "--network", "none", IMAGE, "true"], ["ignore", "pipe", "pipe"]);
    if (!dockerReason) dockerReason = await dockerRun().then(() => undefined, (error: unknown) => `docker run ${IMAGE} failed: ${(error as Error).message}`);
    const dockerSandbox = dockerReason
      ? undefined
      : await new DockerRuntime({ host: DOCKER_SOCKET, logger: silentLogger }).createSandbox(
          { jobId: 990_002, attempt: 1, executorName: "bench", workspace, scratchDir: root, resources: {}, labels: sandboxLabels("bench", 990_002, 1), logger: silentLogger },
          new AbortController().signal,
        );
    // Docker's columns run in a second round: dockerd and containerd keep working after each run,
    // which would weigh on whichever bwrap column came next.
    const dockerColumns: typeof columns = [];
    if (dockerSandbox) {
      dockerColumns.push({
        name: "docker step",
        run: async () => {
          const outcome = await dockerSandbox.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => undefined }, new AbortController().signal);
          if (outcome.exitCode !== 0) throw new Error(`docker step failed: ${JSON.stringify(outcome)}`);
        },
      });
      dockerColumns.push({ name: "docker run", run: dockerRun });
    }

    const samples = new Map([...columns, ...dockerColumns].map((column) => [column.name, [] as number[]]));
    for (const [round, runs] of [
      [columns, RUNS],
      [dockerColumns, DOCKER_RUNS],
    ] as const) {
      for (const column of round) await column.run();
      for (let run = 0; run < runs; run += 1) {
        // Rotate the order, so no column always follows the same one.
        for (let index = 0; index < round.length; index += 1) {
          const column = round[(index + run) % round.length];
          if (column) samples.get(column.name)?.push(await timed(column.run));
        }
      }
    }
    await sandbox.destroy();
    await dockerSandbox?.destroy();

    const bare = median(samples.get("bare bwrap") ?? []);
    const ours = median(samples.get("airlock step") ?? []);
    console.log(`Per step: \`true\` in ${IMAGE}; bwrap columns ${RUNS} interleaved runs each, docker columns ${DOCKER_RUNS} (ms)\n`);
    const rows: (string | number)[][] = [...samples].map(([name, values]) => [name, median(values), percentile(values, 90), (median(values) / bare).toFixed(2)]);
    if (dockerReason) rows.push(["docker step, docker run", "-", "-", `skipped: ${dockerReason}`]);
    printTable(["column", "median", "p90", "ratio to bare bwrap (median)"], rows);
    const ratio = ours / bare;
    console.log(`\nTarget ratio <= 1.10: ${ratio <= 1.1 ? "met" : "MISSED"} (${ratio.toFixed(2)}). Target < 30 ms per step: ${ours < 30 ? "met" : "MISSED"} (${ours.toFixed(1)} ms).`);
    console.log(`First use of ${IMAGE}: resolved and unpacked from its OCI layout in ${unpackMs.toFixed(0)} ms (later steps reuse it).`);

    await wholeJob();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function wholeJob(): Promise<void> {
  const cluster = await startCluster({ runtime: "bwrap", executorArgs: ["--images", TEST_IMAGES] });
  try {
    const { jobs, steps } = await timeWholeJobs(cluster, "namespace", IMAGE, JOB_RUNS);
    console.log(`\nWhole job: 3 steps (sed, grep, wc) on a 3-file repository, submit -> completed, ${JOB_RUNS} runs (ms)\n`);
    printTable(["runtime", "job median", "job min", "steps median (sum of the 3 step durations)"], [["bwrap", median(jobs), Math.min(...jobs), median(steps)]]);
  } finally {
    await cluster.close();
  }
}

await main();
