/**
 * Pieces of the job-overhead benchmark (overhead.bench.ts): the generated large repository, a
 * bare `git daemon` to clone from, CPU time of a process and its reaped children, and the
 * queue cycle (store alone and over HTTP) on SQLite.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent } from "undici";
import { runChecked, gitEnv } from "../src/common/exec.ts";
import { freePort, type LocalCoordinator } from "../src/cli/local-cluster.ts";
import { PROTOCOL_VERSION } from "../src/protocol/index.ts";
import { createSqliteStore } from "../src/store/sqlite/index.ts";
import { baseEnv } from "../test/helpers/cluster.ts";
import { httpCycles, noopSpec } from "./postgres-airlock.ts";

const env = gitEnv(baseEnv);

/**
 * A repository of `files` files (in directories of 100) and `commits` commits, each after the first
 * changing a few files; made once with `git fast-import` and kept in $TMPDIR between runs.
 */
export async function largeRepo(files = 50_000, commits = 2_000): Promise<string> {
  const dir = join(process.env.BENCH_CACHE_DIR ?? tmpdir(), `airlock-bench-large-${files}-${commits}`);
  if (existsSync(join(dir, ".git", "airlock-bench-complete"))) return dir;
  const staging = `${dir}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await runChecked("git", ["init", "--quiet", "--initial-branch=main"], { cwd: staging, env });
  const lines: string[] = [];
  const path = (index: number) => `dir${String(Math.floor(index / 100)).padStart(4, "0")}/file${index % 100}.txt`;
  for (let commit = 0; commit < commits; commit += 1) {
    lines.push("commit refs/heads/main", `committer Bench <bench@airlock.invalid> ${1_700_000_000 + commit * 60} +0000`, "data <<EOM", `commit ${commit}`, "EOM");
    const changed = commit === 0 ? Array.from({ length: files }, (_, index) => index) : Array.from({ length: 5 }, (_, index) => (commit * 7919 + index * 104_729) % files);
    for (const index of changed) lines.push(`M 100644 inline ${path(index)}`, "data <<EOM", `file ${index}, version ${commit}`, "line two of a small text file", "EOM");
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn("git", ["fast-import", "--quiet"], { cwd: staging, env, stdio: ["pipe", "ignore", "inherit"] });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`git fast-import exited ${code}`))));
    child.stdin.end(`${lines.join("\n")}\n`);
  });
  await runChecked("git", ["repack", "-a", "-d", "-q"], { cwd: staging, env });
  await runChecked("git", ["checkout", "--quiet", "main"], { cwd: staging, env });
  await runChecked("touch", [join(staging, ".git", "airlock-bench-complete")], { env });
  await rm(dir, { recursive: true, force: true });
  await rename(staging, dir);
  return dir;
}

/** `git daemon` serving the repositories under `base` (read-only), as the bare clone's server. */
export async function gitDaemon(base: string): Promise<{ url: (name: string) => string; pid: number; stop: () => Promise<void> }> {
  const port = await freePort();
  await mkdir(base, { recursive: true });
  // git-daemon itself, not the `git` wrapper that waits for it: its children's CPU is counted as they are reaped.
  const execPath = (await runChecked("git", ["--exec-path"], { env })).stdout.toString().trim();
  const child = spawn(join(execPath, "git-daemon"), ["--reuseaddr", "--export-all", `--base-path=${base}`, "--listen=127.0.0.1", `--port=${port}`], { env, stdio: "ignore" });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  for (let tries = 0; tries < 100; tries += 1) {
    const probe = await new Promise<number | null>((resolve) => spawn("git", ["ls-remote", `git://127.0.0.1:${port}/`], { env, stdio: "ignore" }).on("close", resolve));
    if (probe !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: (name) => `git://127.0.0.1:${port}/${name}`,
    pid: child.pid ?? 0,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** CPU seconds of a process plus its reaped children (utime, stime, cutime, cstime of /proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14-17 of stat(5), counted after the command name (which ends at field 2).
  const ticks = [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index]), 0);
  return ticks / 100;
}

/** CPU ms of a process itself and of its reaped children, apart (the same fields as `cpuSeconds`). */
export function cpuSplit(pid: number | "self"): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  const ticks = (from: number) => ((fields[from] ?? 0) + (fields[from + 1] ?? 0)) * 10;
  return { self: ticks(11), children: ticks(13) };
}

export function loadAverage(): string {
  return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
}

async function sqliteEnqueue(path: string, queue: string, count: number): Promise<void> {
  const store = createSqliteStore(path);
  try {
    await store.migrate();
    for (let index = 0; index < count; index += 1) await store.jobs.enqueue({ spec: noopSpec(queue), ref: null, commit: null }, Date.now());
  } finally {
    await store.close();
  }
}

/** Claim + complete cycles on a SQLite store in this process, `workers` at a time: jobs per second. */
export async function sqliteStoreRate(dir: string, jobs: number, workers: number): Promise<number> {
  const path = join(dir, `store-${Date.now()}.db`);
  await sqliteEnqueue(path, "bench", jobs);
  const store = createSqliteStore(path);
  try {
    let done = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: workers }, async (_, worker) => {
        const executor = { executorName: `bench-${worker}`, hostname: "bench", version: "bench", protocolVersion: PROTOCOL_VERSION, runtime: "shell", isolation: ["none" as const], network: "internet" as const, queues: ["bench"] };
        for (;;) {
          const job = await store.jobs.claim({ executor, tokenHash: `${worker}-${done}-${Math.random()}`, leaseMs: 60_000, preference: ["bench"] }, Date.now());
          if (!job) return;
          await store.jobs.finishAttempt({ jobId: job.id, attempt: job.attempt, repository: null, executorName: executor.executorName }, "completed", null, Date.now());
          done += 1;
        }
      }),
    );
    if (done !== jobs) throw new Error(`the SQLite store completed ${done} of ${jobs} jobs`);
    return jobs / ((performance.now() - started) / 1000);
  } finally {
    await store.close();
    await rm(path, { force: true });
  }
}

/** Dequeue + complete cycles over HTTP against a SQLite coordinator (jobs put into its database first). */
export async function sqliteHttpRate(coordinator: LocalCoordinator, queue: string, jobs: number, workers: number): Promise<number> {
  await sqliteEnqueue(join(coordinator.dataDir, "airlock.db"), queue, jobs);
  const agent = new Agent({ connections: workers + 2 });
  try {
    const started = performance.now();
    const done = await httpCycles(coordinator.url, agent, queue, workers, coordinator.executorToken);
    if (done !== jobs) throw new Error(`airlock over HTTP completed ${done} of ${jobs} jobs`);
    return jobs / ((performance.now() - started) / 1000);
  } finally {
    await agent.close();
  }
}
