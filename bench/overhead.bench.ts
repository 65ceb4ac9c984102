/**
 * Job overhead (issue 15): what a job costs besides its steps, each figure beside its bare
 * counterpart from the same run, bare and ours interleaved so drift in this shared machine's load
 * hits both:
 * - whole-job overhead: submit -> completed minus the steps' durations (coordinator clock), 3 tiny
 *   steps on a 3-file repository with outputs.diff, shell and bwrap (target <= 100 ms);
 * - pickup with a clone (queued -> first step started; a new commit every time, so the executor's
 *   cache fetches it) beside `git clone --depth 1` from `git daemon` (target <= 1.2x);
 * - a large repository (~50,000 files, ~2,000 commits, generated once and kept in $TMPDIR):
 *   workspace preparation with a cold cache, and after a one-commit change, beside the bare clone;
 * - no-op jobs/s with --max-jobs 8 beside `sh -c true` x8 (target >= 0.8x);
 * - coordinator CPU per clone of an unchanged commit (its process and its git children), with the
 *   pack cache and without, beside git daemon's;
 * - dequeue + complete over HTTP beside the store alone, steady state (each side runs
 *   BENCH_WARM_JOBS untimed first), SQLite (and Postgres when
 *   AIRLOCK_TEST_DATABASE_URL is set) (target >= 0.5x).
 *   scripts/bench.sh overhead      (BENCH_LARGE=0 skips the large repository;
 *                                   BENCH_ONLY=queue runs only the HTTP dequeue + complete rows)
 */
import { spawn } from "node:child_process";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { ApiClient } from "../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../src/cli/local-cluster.ts";
import { gitEnv, runChecked } from "../src/common/exec.ts";
import type { JobView } from "../src/protocol/index.ts";
import { bwrapUnavailable, TEST_IMAGES, testImagesMissing } from "../test/helpers/bwrap.ts";
import { baseEnv, commitFile, ENTRY, makeRepo, tempDir, waitForJob } from "../test/helpers/cluster.ts";
import { bareShellRun, median, printTable } from "./lib.ts";
import { SMALL_REPO_FILES, wholeJobSpec } from "./whole-job.ts";
import { cpuSeconds, cpuSplit, gitDaemon, largeRepo, loadAverage, sqliteHttpRate, sqliteStoreRate } from "./overhead-parts.ts";

const WHOLE_RUNS = Number(process.env.BENCH_WHOLE_RUNS ?? 8);
const PICKUP_RUNS = Number(process.env.BENCH_PICKUP_RUNS ?? 10);
const NOOP_JOBS = Number(process.env.BENCH_NOOP_JOBS ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CLONE_RUNS = Number(process.env.BENCH_CLONE_RUNS ?? 3);
const QUEUE_JOBS = Number(process.env.BENCH_QUEUE_JOBS ?? 10_000);
/** Jobs run untimed through each side first: the rates are steady-state, not the JIT's warm-up. */
const WARM_JOBS = Number(process.env.BENCH_WARM_JOBS ?? 2000);
const QUEUE_ONLY = process.env.BENCH_ONLY === "queue";
const LARGE = process.env.BENCH_LARGE !== "0" && !QUEUE_ONLY;
const LARGE_ROUNDS = Number(process.env.BENCH_LARGE_ROUNDS ?? 3);
const env = gitEnv(baseEnv);

const dir = await tempDir("airlock-bench-overhead-");
const processes: ManagedProcess[] = [];
const rows: (string | number)[][] = [];
const loads: string[] = [loadAverage()];

function executor(coordinator: LocalCoordinator, name: string, args: string[]): ManagedProcess {
  const child = startAirlock(ENTRY, ["executor", "run", "--url", coordinator.url, "--data", join(dir, name), "--name", name, "--log-level", "warn", ...args], {
    env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken },
    logFile: join(dir, `${name}.log`),
  });
  processes.push(child);
  return child;
}

async function waitForExecutor(api: ApiClient, name: string): Promise<void> {
  for (let tries = 0; tries < 400; tries += 1) {
    if ((await api.executors()).some((candidate) => candidate.name === name)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`executor ${name} never showed up`);
}

const at = (value: string | null | undefined): number => (value ? Date.parse(value) : Number.NaN);
const stepsMs = (job: JobView): number => job.entries.filter((entry) => entry.kind === "step").reduce((sum, entry) => sum + (entry.durationMs ?? 0), 0);
const entryMs = (job: JobView, key: string): number => job.entries.find((entry) => entry.key === key)?.durationMs ?? Number.NaN;

async function runJob(api: ApiClient, spec: Record<string, unknown>, timeoutMs = 120_000): Promise<JobView> {
  const job = await waitForJob(api, (await api.submit(spec)).id, undefined, timeoutMs);
  if (job.state !== "completed") throw new Error(`bench job ${job.id} ended ${job.state}: ${job.failureMessage ?? ""}`);
  return job;
}

async function workspacesGone(root: string): Promise<void> {
  while ((await readdir(root).catch(() => [] as string[])).some((name) => name.startsWith("job-"))) await new Promise((resolve) => setTimeout(resolve, 100));
}

async function timedSpawn(command: string, args: string[], cwd?: string): Promise<number> {
  const started = performance.now();
  await new Promise<void>((resolve, reject) =>
    spawn(command, args, { env, stdio: "ignore", ...(cwd ? { cwd } : {}) }).on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited ${code}`)))),
  );
  return performance.now() - started;
}

async function bareClone(url: string): Promise<number> {
  const target = join(dir, `bare-${Math.random().toString(16).slice(2)}`);
  const ms = await timedSpawn("git", ["clone", "--quiet", "--depth", "1", url, target]);
  await rm(target, { recursive: true, force: true });
  return ms;
}

/** What the whole-job bench's job does, done by hand: clone, the 3 steps, the diff, cleanup. */
async function bareJob(url: string): Promise<number> {
  const target = join(dir, `bare-job-${Math.random().toString(16).slice(2)}`);
  const script = [
    `git clone --quiet --depth 1 ${url} ${target}`,
    `cd ${target}`,
    "sed -i s/foo/qux/ src/a.txt src/b.txt",
    "grep -r qux src >/dev/null",
    "wc -l src/a.txt src/b.txt > counts.txt",
    "git add --all",
    "git diff --cached --binary > ../diff-$$",
    "cd ..",
    `rm -rf ${target} diff-$$`,
  ].join(" && ");
  return timedSpawn("/bin/sh", ["-c", script], dir);
}

/**
 * Submit `count` no-op jobs at once; the rate runs from the first submit to the last job's end, on
 * the coordinator's clock (this host's). Completion is watched through the queue's counts, which
 * cost the coordinator one aggregate, rather than by listing the jobs while they run, which would
 * take the coordinator's time from the jobs being measured.
 */
async function noopRate(api: ApiClient, queue: string, count: number): Promise<number> {
  const started = Date.now();
  await Promise.all(Array.from({ length: count }, () => api.submit({ queue, isolation: "none", steps: [{ commands: ["true"] }] })));
  for (;;) {
    const counts = (await api.queues()).find((entry) => entry.name === queue);
    if (!counts || counts.queued + counts.processing === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const jobs = await api.listJobs({ queue, limit: count });
  const ended = jobs.filter((job) => job.state === "completed");
  if (ended.length !== count) throw new Error(`${ended.length} of ${count} no-op jobs completed`);
  const last = Math.max(...ended.map((job) => Date.parse(job.finishedAt ?? "")));
  return count / ((last - started) / 1000);
}

const coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir: join(dir, "coordinator"), env: baseEnv, extraArgs: ["--log-level", "warn"] });
processes.push(coordinator);
const api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
const daemonRoot = join(dir, "daemon");
const daemon = await gitDaemon(daemonRoot);
let shellExecutor: ManagedProcess;
try {
  const noopQueues = Array.from({ length: ROUNDS }, (_, round) => `noop-${round}`);
  shellExecutor = executor(coordinator, "shell", ["--runtime", "shell", "--queues", ["shell", ...noopQueues].join(","), "--max-jobs", "8"]);
  await waitForExecutor(api, "shell");
  const noBwrap = testImagesMissing() ?? (await bwrapUnavailable());
  if (!noBwrap) {
    executor(coordinator, "bwrap", ["--runtime", "bwrap", "--queues", "bwrap", "--images", TEST_IMAGES]);
    await waitForExecutor(api, "bwrap");
  }

  if (!QUEUE_ONLY) await jobRows(noBwrap, noopQueues);
  await queueRates();
  loads.push(loadAverage());
  printTable(["measure", "airlock", "bare / target", "ratio", "note"], rows);
  console.log(`\nload average (1, 5, 15 min) at the start and after each part: ${loads.join(" | ")}`);
} finally {
  await api.close();
  await daemon.stop();
  for (const child of processes.reverse()) await child.stop(5000);
  await rm(dir, { recursive: true, force: true });
}

/** The large repository: preparation cold and warm beside the bare clone, then coordinator CPU per clone. */
async function largeRepository(): Promise<void> {
  const generated = await largeRepo();
  // A cheap clone of the kept repository is the source, so the bench's commits leave the kept one alone.
  const source = join(daemonRoot, "large");
  await runChecked("git", ["clone", "--quiet", "--shared", generated, source], { env });
  await api.addRepository("bench/large", source);
  const spec = { queue: "", repository: "bench/large", isolation: "none", steps: [{ commands: ["true"] }] };
  const cold: number[] = [];
  const warm: number[] = [];
  const bare: number[] = [];
  for (let round = 0; round < LARGE_ROUNDS; round += 1) {
    bare.push(await bareClone(daemon.url("large")));
    const name = `large-${round}`;
    const fresh = executor(coordinator, name, ["--runtime", "shell", "--queues", name]);
    await waitForExecutor(api, name);
    cold.push(entryMs(await runJob(api, { ...spec, queue: name }, 900_000), "prepare"));
    // The executor removes a job's workspace after reporting it: let 50,000 unlinks finish first.
    await workspacesGone(join(dir, name, "workspaces"));
    await commitFile(source, "dir0000/file0.txt", `changed in round ${round}\n`);
    warm.push(entryMs(await runJob(api, { ...spec, queue: name }, 900_000), "prepare"));
    await workspacesGone(join(dir, name, "workspaces"));
    await fresh.stop(10_000);
  }
  rows.push(["large repo prepare, cold cache (ms)", median(cold), median(bare), median(cold) / median(bare), "50,000 files, 2,000 commits; target <= 1.2"]);
  rows.push(["large repo prepare, after a one-commit change (ms)", median(warm), median(bare), median(warm) / median(bare), "bare: git clone --depth 1 (git daemon)"]);
  loads.push(loadAverage());

  // Coordinator CPU per clone of an unchanged commit: with the pack cache, without it, git daemon.
  const uncached = await startLocalCoordinator({ entry: ENTRY, dataDir: join(dir, "coordinator-uncached"), env: baseEnv, extraArgs: ["--log-level", "warn", "--git-pack-cache-max", "off"] });
  processes.push(uncached);
  const uncachedApi = new ApiClient({ url: uncached.url, token: uncached.apiToken });
  try {
    await uncachedApi.addRepository("bench/large", source);
    for (const depth of [["--depth", "1"], []]) {
      const what = depth.length > 0 ? "depth 1" : "full history";
      const cpu = { cached: [] as number[], uncached: [] as number[], daemon: [] as number[] };
      const clone = async (pid: number, url: string, token: string | undefined, into: number[] | undefined): Promise<void> => {
        const before = cpuSeconds(pid);
        const target = join(dir, `cpu-${Math.random().toString(16).slice(2)}`);
        await timedSpawn("git", [...(token ? ["-c", `http.extraHeader=Authorization: Bearer ${token}`] : []), "clone", "--quiet", "--no-checkout", ...depth, url, target]);
        // The coordinator reaps upload-pack when the response ends; give it a moment to be counted.
        await new Promise((resolve) => setTimeout(resolve, 200));
        into?.push((cpuSeconds(pid) - before) * 1000);
        await rm(target, { recursive: true, force: true });
      };
      for (let run = 0; run <= CLONE_RUNS; run += 1) {
        const keep = run === 0 ? undefined : true;
        await clone(coordinator.child.pid ?? 0, `${coordinator.url}/.executors/git/bench/large`, coordinator.apiToken, keep && cpu.cached);
        await clone(uncached.child.pid ?? 0, `${uncached.url}/.executors/git/bench/large`, uncached.apiToken, keep && cpu.uncached);
        await clone(daemon.pid, daemon.url("large"), undefined, keep && cpu.daemon);
      }
      rows.push([`coordinator CPU per clone, ${what}, pack cache (ms)`, median(cpu.cached), median(cpu.daemon), median(cpu.cached) / median(cpu.daemon), "bare: git daemon's CPU"]);
      rows.push([`coordinator CPU per clone, ${what}, no pack cache (ms)`, median(cpu.uncached), median(cpu.daemon), median(cpu.uncached) / median(cpu.daemon), "--git-pack-cache-max off (before)"]);
    }
  } finally {
    await uncachedApi.close();
    await uncached.stop(5000);
  }
}

/** Dequeue + complete over HTTP beside the store alone: SQLite, then Postgres when one is given. */
async function queueRates(): Promise<void> {
  const store: number[] = [];
  const http: number[] = [];
  await sqliteStoreRate(dir, WARM_JOBS, 8);
  await sqliteHttpRate(coordinator, "http-warm", WARM_JOBS, 8);
  for (let round = 0; round < ROUNDS; round += 1) {
    store.push(await sqliteStoreRate(dir, QUEUE_JOBS, 8));
    http.push(await sqliteHttpRate(coordinator, `http-${round}`, QUEUE_JOBS, 8));
  }
  rows.push([`HTTP dequeue + complete, SQLite (jobs/s, 8 workers)`, median(http), median(store), median(http) / median(store), "bare: the store alone; target >= 0.5"]);
  if (!process.env.AIRLOCK_TEST_DATABASE_URL) {
    rows.push(["HTTP dequeue + complete, Postgres", "skipped", "", "", "AIRLOCK_TEST_DATABASE_URL is not set"]);
    return;
  }
  const { airlockHttp, airlockStore, startPostgresCoordinator } = await import("./postgres-airlock.ts");
  const { freshDatabase, dropTemplate } = await import("../test/helpers/postgres.ts");
  const pgStore: number[] = [];
  const pgHttp: number[] = [];
  try {
    for (let round = 0; round < ROUNDS; round += 1) {
      const a = await freshDatabase();
      const figures = await airlockStore(a.url, QUEUE_JOBS, 8, 0, WARM_JOBS);
      pgStore.push(figures.jobs / figures.seconds);
      await a.drop();
      const b = await freshDatabase();
      const pg = await startPostgresCoordinator(dir, b.url, `coordinator-pg-${round}`);
      try {
        const over = await airlockHttp(b.url, pg, QUEUE_JOBS, 8, 0, WARM_JOBS);
        pgHttp.push(over.jobs / over.seconds);
      } finally {
        await pg.stop(5000);
        await b.drop();
      }
    }
  } finally {
    await dropTemplate();
  }
  rows.push([`HTTP dequeue + complete, Postgres (jobs/s, 8 workers)`, median(pgHttp), median(pgStore), median(pgHttp) / median(pgStore), "bare: the store alone; target >= 0.5"]);
}

/** The rows with jobs that run: whole jobs, pickup with a clone, the large repository, no-op throughput. */
async function jobRows(noBwrap: string | undefined, noopQueues: string[]): Promise<void> {
  // Whole jobs, shell and bwrap taking turns.
  const small = await makeRepo(join(daemonRoot, "small"), SMALL_REPO_FILES);
  await api.addRepository("bench/small", small);
  const wholeSpec = (queue: string, isolation: string, image: string | undefined) => ({ ...wholeJobSpec(isolation, image), queue });
  const kinds = [{ name: "shell", spec: wholeSpec("shell", "none", undefined) }, ...(noBwrap ? [] : [{ name: "bwrap", spec: wholeSpec("bwrap", "namespace", "airlock-test/busybox") }])];
  const overhead: Record<string, number[]> = { shell: [], bwrap: [] };
  const whole: number[] = [];
  const bareWhole: number[] = [];
  for (let run = 0; run <= WHOLE_RUNS; run += 1) {
    const bare = await bareJob(daemon.url("small"));
    for (const kind of kinds) {
      const job = await runJob(api, kind.spec);
      if (run === 0) continue;
      overhead[kind.name]?.push(at(job.finishedAt) - at(job.queuedAt) - stepsMs(job));
      if (kind.name === "shell") whole.push(at(job.finishedAt) - at(job.queuedAt));
    }
    if (run > 0) bareWhole.push(bare);
  }
  rows.push([`whole job, shell: submit -> completed (ms, median of ${WHOLE_RUNS})`, median(whole), median(bareWhole), median(whole) / median(bareWhole), "bare: clone, 3 steps, diff as one sh script"]);
  for (const kind of kinds) rows.push([`whole-job overhead, ${kind.name} (ms, median of ${WHOLE_RUNS})`, median(overhead[kind.name] ?? []), 100, median(overhead[kind.name] ?? []) / 100, "target <= 100 ms"]);
  if (noBwrap) rows.push(["whole-job overhead, bwrap", "skipped", "", "", noBwrap]);
  loads.push(loadAverage());

  // Pickup with a clone: a new commit each time, beside the bare depth-1 clone of the same repository.
  const pickups: number[] = [];
  const clones: number[] = [];
  for (let run = 0; run <= PICKUP_RUNS; run += 1) {
    await commitFile(small, "src/c.txt", `pickup ${run}\n`);
    const bare = await bareClone(daemon.url("small"));
    const job = await runJob(api, { queue: "shell", repository: "bench/small", isolation: "none", steps: [{ commands: ["true"] }] });
    if (run === 0) continue;
    clones.push(bare);
    pickups.push(at(job.entries.find((entry) => entry.kind === "step")?.startedAt) - at(job.queuedAt));
  }
  rows.push(["pickup with a clone, small repo, new commit (ms)", median(pickups), median(clones), median(pickups) / median(clones), "bare: git clone --depth 1 (git daemon); target <= 1.2"]);
  loads.push(loadAverage());

  if (LARGE) await largeRepository();

  // No-op throughput, rounds of ours and bare taking turns, with the CPU each process spent (from
  // /proc: this process, the coordinator, the executor, the steps it reaped), which says where a
  // no-op job's time goes on cores that every process shares.
  const ours: number[] = [];
  const bare: number[] = [];
  const spent = { coordinator: 0, executor: 0, steps: 0, client: 0, bareNode: 0, bareSh: 0 };
  const shellPid = shellExecutor.child.pid as number;
  for (const queue of noopQueues) {
    const [c0, e0, m0] = [cpuSplit(coordinator.child.pid as number), cpuSplit(shellPid), cpuSplit("self")];
    ours.push(await noopRate(api, queue, NOOP_JOBS));
    const [c1, e1, m1] = [cpuSplit(coordinator.child.pid as number), cpuSplit(shellPid), cpuSplit("self")];
    spent.coordinator += c1.self - c0.self;
    spent.executor += e1.self - e0.self;
    spent.steps += e1.children - e0.children;
    spent.client += m1.self - m0.self;
    const run = await bareShellRun(NOOP_JOBS, 8);
    bare.push(run.rate);
    spent.bareNode += run.nodeMs * NOOP_JOBS;
    spent.bareSh += run.shMs * NOOP_JOBS;
  }
  rows.push([`no-op jobs/s, --max-jobs 8 (${NOOP_JOBS} jobs, median of ${ROUNDS})`, median(ours), median(bare), median(ours) / median(bare), "bare: sh -c true x8; target >= 0.8"]);
  const perJob = (ms: number) => ms / (NOOP_JOBS * noopQueues.length);
  const oursCpu = perJob(spent.coordinator + spent.executor + spent.steps + spent.client);
  const bareCpu = perJob(spent.bareNode + spent.bareSh);
  const split = `coordinator ${perJob(spent.coordinator).toFixed(2)}, executor ${perJob(spent.executor).toFixed(2)}, its steps ${perJob(spent.steps).toFixed(2)}, submitting client ${perJob(spent.client).toFixed(2)}; bare: node ${perJob(spent.bareNode).toFixed(2)}, sh ${perJob(spent.bareSh).toFixed(2)}`;
  rows.push(["CPU per no-op job, all processes (ms)", oursCpu, bareCpu, oursCpu / bareCpu, split]);
  loads.push(loadAverage());

}
