/**
 * Batch changes (issue 13) over many small repositories, one machine, per runtime (shell, bwrap):
 *   bare loop         one /bin/sh loop over local clones: the batch's sed, then `git diff` into a
 *                     file (what someone would do by hand; the bare figure)
 *   loop with clone   the same, each repository cloned first (what getting it at a commit costs)
 *   server-side       `POST /api/batches` (a preview) -> every entry ended, 2 executors x
 *                     --max-jobs 4 on queue batch; the diff of each entry checked
 *   re-preview        the same spec again: every entry from the execution cache
 *   local mode        `airlock batch run --local -j 8` on the same repositories (resolve, run
 *                     with the executor's code here, upload), as a user runs it
 * Per-repository overhead = (server-side - bare loop) / repositories, in wall time.
 * Target: server-side <= 3x the bare loop.
 *   scripts/bench.sh batch          (BENCH_BATCH_REPOS=50 for a quicker run)
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BatchView } from "../src/protocol/batch.ts";
import { isTerminal } from "../src/protocol/index.ts";
import { TEST_IMAGES, testImagesMissing } from "../test/helpers/bwrap.ts";
import { baseEnv, ENTRY, startCluster, type Cluster } from "../test/helpers/cluster.ts";
import { BwrapRuntime } from "../src/runtimes/bwrap/index.ts";
import { silentLogger } from "../src/common/logger.ts";
import { bareLoop, bareLoopWithClone, makeRepositories, pool, repoName, SED } from "./batch-repos.ts";
import { median, printTable } from "./lib.ts";

const COUNT = Number(process.env.BENCH_BATCH_REPOS ?? 200);
const LOOP_RUNS = Number(process.env.BENCH_BATCH_LOOP_RUNS ?? 5);
const EXECUTORS = 2;
const MAX_JOBS = 4;
const HOST_PATH = process.env.PATH ?? "/usr/bin:/bin";

function spec(name: string, runtime: string, marker: string): string {
  return [
    `name: ${name}`,
    "description: rename foo to bar in every repository",
    "on:",
    '  - "bench/*"',
    `isolation: ${runtime === "shell" ? "none" : "namespace"}`,
    "steps:",
    "  - key: rewrite",
    "    image: airlock-test/busybox",
    `    run: ${SED}`,
    // Changes the cache key (not the diff), so each measured preview really runs.
    `    env: { BENCH_RUN: "${marker}" }`,
    "changesetTemplate:",
    "  title: Rename foo to bar",
    "",
  ].join("\n");
}

async function api(cluster: Cluster, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${cluster.coordinator.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${cluster.coordinator.apiToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}: ${text.slice(0, 400)}`);
  return JSON.parse(text) as unknown;
}

/** Previews the spec and waits for every entry to end; ms from the request to the last end. */
async function serverSide(cluster: Cluster, text: string, name: string): Promise<{ ms: number; previewMs: number; view: BatchView }> {
  const started = performance.now();
  let view = BatchView.parse(await api(cluster, "POST", "/api/batches", { spec: text }));
  const previewMs = performance.now() - started;
  while (view.entries.length < COUNT || view.entries.some((entry) => !isTerminal(entry.state))) {
    // Not faster: each look reads every entry's job, which would weigh on what is measured.
    await new Promise((resolve) => setTimeout(resolve, 200));
    view = BatchView.parse(await api(cluster, "GET", `/api/batches/${name}`));
  }
  const ms = performance.now() - started;
  const bad = view.entries.filter((entry) => entry.state !== "completed" || entry.diffStat?.files !== 2);
  if (bad.length > 0) throw new Error(`${bad.length} entries of ${name} did not complete with a 2-file diff, e.g. ${JSON.stringify(bad[0])}`);
  return { ms, previewMs, view };
}

/** `airlock batch run --local`; ms from start to exit, and its phases as it reports them. */
async function localMode(cluster: Cluster, specFile: string, runtime: string): Promise<{ ms: number; phases: string }> {
  const started = performance.now();
  const args = [ENTRY, "batch", "run", specFile, "--local", "--runtime", runtime, "-j", String(EXECUTORS * MAX_JOBS), "--images", TEST_IMAGES, "--work-dir", join(cluster.dir, `local-${runtime}`)];
  const child = spawn(process.execPath, args, {
    env: { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_TOKEN: cluster.coordinator.apiToken },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`batch run --local exited ${code}: ${output.slice(-2000)}`);
  return { ms: performance.now() - started, phases: /^resolved .*$/m.exec(output)?.[0] ?? "" };
}

/** CPU time of a process (its own, and its waited-for descendants'), in ms; "self" for this process. */
function cpu(pid: number | "self"): { own: number; children: number } {
  const fields = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
  const tick = 10; // CLK_TCK is 100 on Linux
  return { own: (Number(fields[11]) + Number(fields[12])) * tick, children: (Number(fields[13]) + Number(fields[14])) * tick };
}

/** CPU spent while `action` ran, per repository: the coordinator (and its git), the executors (and their git and steps), this process's children. */
async function cpuPerRepository(cluster: Cluster, action: () => Promise<void>): Promise<Record<string, number>> {
  const pids = { coordinator: cluster.coordinator.child.pid ?? 0, executors: cluster.executors.map((executor) => executor.child.pid ?? 0).filter((pid) => pid > 0) };
  const sample = () => ({ coordinator: cpu(pids.coordinator), executors: pids.executors.map((pid) => cpu(pid)), self: cpu("self") });
  const before = sample();
  await action();
  const after = sample();
  const sum = (list: { own: number; children: number }[], key: "own" | "children") => list.reduce((total, item) => total + item[key], 0);
  return {
    coordinator: (after.coordinator.own - before.coordinator.own) / COUNT,
    "coordinator's git": (after.coordinator.children - before.coordinator.children) / COUNT,
    executors: (sum(after.executors, "own") - sum(before.executors, "own")) / COUNT,
    "executors' git and steps": (sum(after.executors, "children") - sum(before.executors, "children")) / COUNT,
    "airlock batch run and its git and steps": (after.self.children - before.self.children) / COUNT,
  };
}

interface Figures {
  runtime: string;
  loop: number;
  loopWithClone: number;
  server: number;
  preview: number;
  jobMedian: number;
  cached: number;
  local: number;
  localPhases: string;
  serverCpu: Record<string, number>;
  localCpu: Record<string, number>;
}

async function measure(runtime: string): Promise<Figures> {
  const cluster = await startCluster({ runtime, executors: 0, coordinatorArgs: ["--log-level", "warn"], executorArgs: ["--queues", "batch", "--max-jobs", String(MAX_JOBS), "--images", TEST_IMAGES, "--log-level", "warn"] });
  try {
    const { clones } = await makeRepositories(cluster.dir, COUNT, HOST_PATH);
    await pool(
      Array.from({ length: COUNT }, (_, index) => index),
      4,
      async (index) => void (await cluster.api.addRepository(repoName(index), join(cluster.dir, "sources", `r${String(index).padStart(3, "0")}`))),
    );
    const loops: number[] = [];
    for (let run = 0; run < LOOP_RUNS; run += 1) loops.push(await bareLoop(clones, join(cluster.dir, "loop-diffs"), HOST_PATH));
    const loopWithClone = await bareLoopWithClone(join(cluster.dir, "sources"), join(cluster.dir, "loop-clones"), HOST_PATH);

    for (let index = 0; index < EXECUTORS; index += 1) cluster.startExecutor();
    // Warm-up (the image unpacked, every process's code loaded), not timed.
    await serverSide(cluster, spec(`warm-${runtime}`, runtime, "warm"), `warm-${runtime}`);

    const name = `bench-${runtime}`;
    const text = spec(name, runtime, "1");
    let server = { ms: 0, previewMs: 0, view: undefined as unknown as BatchView };
    const serverCpu = await cpuPerRepository(cluster, async () => void (server = await serverSide(cluster, text, name)));
    const durations: number[] = [];
    for (const entry of server.view.entries) {
      if (entry.jobId === null) continue;
      const job = await cluster.api.getJob(entry.jobId);
      if (job.startedAt && job.finishedAt) durations.push(Date.parse(job.finishedAt) - Date.parse(job.startedAt));
    }
    const cached = await serverSide(cluster, text, name);
    if (cached.view.entries.some((entry) => !entry.cached)) throw new Error("the re-preview ran jobs: the execution cache missed");

    const specFile = join(cluster.dir, `local-${runtime}.yaml`);
    await writeFile(specFile, spec(`local-${runtime}`, runtime, "local"));
    let local = { ms: 0, phases: "" };
    const localCpu = await cpuPerRepository(cluster, async () => void (local = await localMode(cluster, specFile, runtime)));
    const uploaded = BatchView.parse(await api(cluster, "GET", `/api/batches/local-${runtime}`));
    if (uploaded.entries.length !== COUNT || uploaded.entries.some((entry) => entry.state !== "completed" || entry.diffStat?.files !== 2)) {
      throw new Error(`the local run's upload is not ${COUNT} completed 2-file entries`);
    }
    return { runtime, loop: median(loops), loopWithClone, server: server.ms, preview: server.previewMs, jobMedian: median(durations), cached: cached.ms, local: local.ms, localPhases: local.phases, serverCpu, localCpu };
  } finally {
    await cluster.close();
  }
}

async function bwrapUnusable(): Promise<string | undefined> {
  const missing = testImagesMissing();
  if (missing) return missing;
  const probe = await new BwrapRuntime({ path: HOST_PATH, dataDir: "/tmp/airlock-bench-bwrap-probe", images: [], logger: silentLogger }).probe();
  return probe.usable ? undefined : probe.detail;
}

const results: Figures[] = [];
const skipped: string[] = [];
for (const runtime of ["shell", "bwrap"]) {
  const reason = runtime === "bwrap" ? await bwrapUnusable() : undefined;
  if (reason) {
    skipped.push(`${runtime}: ${reason}`);
    continue;
  }
  results.push(await measure(runtime));
}

const s = (ms: number): string => (ms / 1000).toFixed(2);
console.log(`${COUNT} repositories (4 files each, sed over 3), ${EXECUTORS} executors x --max-jobs ${MAX_JOBS} on a ${(await import("node:os")).availableParallelism()}-CPU machine; wall times in seconds\n`);
printTable(
  ["runtime", "bare loop", "loop with clone", "server-side batch", "of which the preview request", "ratio to loop", "per-repository overhead (ms)", "job median (ms)", "re-preview, all cached", "local mode -j 8", "local / loop"],
  results.map((figures) => [
    figures.runtime,
    s(figures.loop),
    s(figures.loopWithClone),
    s(figures.server),
    s(figures.preview),
    (figures.server / figures.loop).toFixed(1),
    ((figures.server - figures.loop) / COUNT).toFixed(1),
    figures.jobMedian.toFixed(0),
    s(figures.cached),
    s(figures.local),
    (figures.local / figures.loop).toFixed(1),
  ]),
);
for (const figures of results) console.log(`\nlocal mode, ${figures.runtime}: ${figures.localPhases}`);
console.log("\nCPU per repository (ms), where it went:\n");
const parts = Object.keys(results[0]?.serverCpu ?? {});
printTable(
  ["run", ...parts, "total"],
  results.flatMap((figures) =>
    [
      [`server-side, ${figures.runtime}`, figures.serverCpu],
      [`local mode, ${figures.runtime}`, figures.localCpu],
    ].map(([label, split]) => [label as string, ...parts.map((part) => (split as Record<string, number>)[part] ?? 0), Object.values(split as Record<string, number>).reduce((total, value) => total + value, 0)]),
  ),
);
for (const line of skipped) console.log(`\nSKIP ${line}`);
for (const figures of results) {
  const ratio = figures.server / figures.loop;
  console.log(`\n${figures.runtime}: target server-side <= 3x the bare loop: ${ratio <= 3 ? "met" : "MISSED"} (${ratio.toFixed(1)}x; ${(figures.server / figures.loopWithClone).toFixed(1)}x the loop with clone)`);
}
