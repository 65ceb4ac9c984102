/**
 * Test fixtures: a real coordinator and real executors as child processes (the built CLI), real
 * git repositories, temporary dirs that are removed afterwards.
 */
import { existsSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiClient } from "../../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { gitEnv, runChecked } from "../../src/common/exec.ts";
import { isTerminal, type IndexView, type JobView } from "../../src/protocol/index.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The built CLI when present (what users run), else the sources. */
export const ENTRY = existsSync(join(ROOT, "dist/src/cli/main.js")) ? join(ROOT, "dist/src/cli/main.js") : join(ROOT, "src/cli/main.ts");
export const BIN = join(ROOT, "bin", "airlock");

export const baseEnv: Record<string, string | undefined> = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  TMPDIR: process.env.TMPDIR,
};

export async function tempDir(prefix = "airlock-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Makes a git repository with `files` committed on branch main; returns its path. */
export async function makeRepo(dir: string, files: Record<string, string | Buffer>): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const env = gitEnv(baseEnv);
  await runChecked("git", ["init", "--quiet", "--initial-branch=main"], { cwd: dir, env });
  await runChecked("git", ["add", "."], { cwd: dir, env });
  await runChecked("git", ["-c", "user.name=Test", "-c", "user.email=test@airlock.invalid", "commit", "--quiet", "-m", "initial"], { cwd: dir, env });
  return dir;
}

export async function commitFile(repo: string, path: string, content: string): Promise<string> {
  const env = gitEnv(baseEnv);
  await writeFile(join(repo, path), content);
  await runChecked("git", ["add", path], { cwd: repo, env });
  await runChecked("git", ["-c", "user.name=Test", "-c", "user.email=test@airlock.invalid", "commit", "--quiet", "-m", `update ${path}`], { cwd: repo, env });
  return (await runChecked("git", ["rev-parse", "HEAD"], { cwd: repo, env })).stdout.toString().trim();
}

export interface Cluster {
  dir: string;
  coordinator: LocalCoordinator;
  api: ApiClient;
  executors: ManagedProcess[];
  startExecutor(extraArgs?: string[], env?: Record<string, string>): ManagedProcess;
  restartCoordinator(): Promise<void>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  coordinatorArgs?: string[];
  /** Executors to start right away (default 1), each with these args. */
  executors?: number;
  executorArgs?: string[];
  /** Executor runtime (default shell). */
  runtime?: string;
}

/** A coordinator (fresh data dir) and executors using the shell runtime, all as child processes. */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const dir = await tempDir();
  const dataDir = join(dir, "coordinator");
  let coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir, env: baseEnv, extraArgs: ["--lease-timeout", "3s", ...(options.coordinatorArgs ?? [])] });
  const port = Number(new URL(coordinator.url).port);
  let api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
  const executors: ManagedProcess[] = [];
  let count = 0;
  const cluster: Cluster = {
    dir,
    get coordinator() {
      return coordinator;
    },
    get api() {
      return api;
    },
    executors,
    startExecutor(extraArgs = [], env = {}) {
      count += 1;
      const executor = startAirlock(
        ENTRY,
        [
          "executor",
          "run",
          "--url",
          coordinator.url,
          "--runtime",
          options.runtime ?? "shell",
          "--data",
          join(dir, `executor-${count}`),
          "--heartbeat-interval",
          "500ms",
          "--name",
          `test-executor-${count}`,
          "--log-format",
          "json",
          ...(options.executorArgs ?? []),
          ...extraArgs,
        ],
        { env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken, ...env }, logFile: join(dir, `executor-${count}.log`) },
      );
      executors.push(executor);
      return executor;
    },
    async restartCoordinator() {
      await coordinator.stop();
      coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir, port, env: baseEnv, extraArgs: ["--lease-timeout", "3s", ...(options.coordinatorArgs ?? [])] });
      await api.close();
      api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
    },
    async close() {
      await Promise.all(executors.map((executor) => executor.stop(5000)));
      await coordinator.stop(5000);
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  for (let index = 0; index < (options.executors ?? 1); index += 1) cluster.startExecutor();
  return cluster;
}

/** Polls the job until `predicate` holds (default: the job ended). */
export async function waitForJob(api: ApiClient, id: number, predicate: (job: JobView) => boolean = (job) => isTerminal(job.state), timeoutMs = 30_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  let job = await api.getJob(id);
  while (!predicate(job)) {
    if (Date.now() > deadline) throw new Error(`job ${id} did not reach the expected state in ${timeoutMs} ms; it is ${job.state}: ${JSON.stringify(job.entries)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    job = await api.getJob(id);
  }
  return job;
}

/** An index once it is no longer pending (or as it is after `timeoutMs`). */
export async function waitForIndex(api: ApiClient, id: number, timeoutMs = 300_000): Promise<IndexView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const index = await api.getIndex(id);
    if (index.state !== "pending" || Date.now() > deadline) return index;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

export async function logText(api: ApiClient, job: JobView, key: string): Promise<string> {
  return (await api.readLog(job.id, key)).toString("utf8");
}

/** Raw HTTP to the coordinator, for probing the API with bad input. */
export async function http(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<{ status: number; body: unknown; text: string }> {
  const response = await fetch(url, { method: init.method ?? "GET", headers: init.headers, body: init.body });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep text
  }
  return { status: response.status, body, text };
}
