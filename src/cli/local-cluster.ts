/**
 * Starting airlock processes on this machine: a coordinator and executors as child processes of
 * the demo (and of the end-to-end tests and benchmarks), each logging to a file.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { HttpClient } from "../common/http-client.ts";
import { readTokenFile } from "../common/token-files.ts";
import { UnavailableError } from "../protocol/index.ts";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

export interface ManagedProcess {
  child: ChildProcess;
  logFile: string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  /** Resolves when the process exits by itself. */
  exited: Promise<number | null>;
}

/** Node flags per command: the executor idles most of its life, and a small young generation keeps it small (as in bin/airlock). */
export function nodeFlagsFor(args: readonly string[]): string[] {
  return args[0] === "executor" ? ["--max-semi-space-size=1"] : [];
}

export function startAirlock(entry: string, args: string[], options: { env: Record<string, string | undefined>; logFile: string; nodeArgs?: string[] }): ManagedProcess {
  const log = openSync(options.logFile, "a");
  const child = spawn(process.execPath, [...nodeFlagsFor(args), ...(options.nodeArgs ?? []), entry, ...args], {
    env: options.env,
    stdio: ["ignore", log, log],
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    logFile: options.logFile,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Polls /healthz until the coordinator answers (or the process dies, or time runs out). */
export async function waitForHealthy(url: string, process: ManagedProcess | undefined, timeoutMs = 30_000, caPem?: Buffer): Promise<void> {
  const client = new HttpClient({ ca: caPem });
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      if (process && process.child.exitCode !== null) throw new UnavailableError(`coordinator exited with ${process.child.exitCode}; see ${process.logFile}`);
      try {
        const response = await client.request({ method: "GET", url: `${url}/healthz`, timeoutMs: 2000 });
        response.dump();
        if (response.status === 200) return;
      } catch {
        // not up yet
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new UnavailableError(`coordinator at ${url} did not become healthy within ${timeoutMs} ms`);
  } finally {
    client.close();
  }
}

export interface LocalCoordinator extends ManagedProcess {
  url: string;
  dataDir: string;
  apiToken: string;
  executorToken: string;
}

/** The data dir's secrets key, made (0600) on first use. */
export function localSecretsKey(dataDir: string): string {
  const path = join(dataDir, "secrets-key");
  if (!existsSync(path)) writeFileSync(path, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600, flag: "wx" });
  return path;
}

export async function startLocalCoordinator(options: {
  entry: string;
  dataDir: string;
  port?: number;
  env: Record<string, string | undefined>;
  extraArgs?: string[];
  /** Where the coordinator's output goes (default: coordinator-<port>.log in its data dir). */
  logFile?: string;
  /** Serve https with this certificate and key; `caPem` verifies it while waiting for health. */
  tls?: { certPath: string; keyPath: string; caPem: Buffer };
}): Promise<LocalCoordinator> {
  const port = options.port ?? (await freePort());
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const extraArgs = options.extraArgs ?? [];
  // A local cluster (the demo, tests, benchmarks) keeps secrets sealed like any coordinator: with
  // a key of its own, in its data dir, unless it was given a key or told to store them plainly.
  const secretsArgs = extraArgs.some((arg) => arg === "--secrets-key-file" || arg === "--allow-plaintext-secrets") ? [] : ["--secrets-key-file", localSecretsKey(options.dataDir)];
  const managed = startAirlock(
    options.entry,
    [
      "server",
      "--data",
      options.dataDir,
      "--listen",
      `127.0.0.1:${port}`,
      "--log-format",
      "json",
      ...(options.tls ? ["--tls-cert", options.tls.certPath, "--tls-key", options.tls.keyPath] : []),
      ...secretsArgs,
      ...extraArgs,
    ],
    { env: options.env, logFile: options.logFile ?? join(options.dataDir, `coordinator-${port}.log`) },
  );
  const url = `${options.tls ? "https" : "http"}://127.0.0.1:${port}`;
  await waitForHealthy(url, managed, 30_000, options.tls?.caPem);
  const apiToken = readTokenFile(options.dataDir, "api") ?? options.env.AIRLOCK_API_TOKEN ?? "";
  const executorToken = readTokenFile(options.dataDir, "executor") ?? options.env.AIRLOCK_EXECUTOR_TOKEN ?? "";
  return { ...managed, url, dataDir: options.dataDir, apiToken, executorToken };
}
