/** Runs host commands (git, mostly) without a shell, collecting output, with a clean environment. */
import { spawn } from "node:child_process";
import { coerceError } from "../protocol/index.ts";

export interface RunOptions {
  cwd?: string;
  env: Readonly<Record<string, string | undefined>>;
  input?: Uint8Array | string;
  signal?: AbortSignal;
  /** Called with output as it arrives (for live logs); output is still collected. */
  onOutput?: (chunk: Buffer, stream: "stdout" | "stderr") => void;
  /** Stop collecting stdout beyond this many bytes (the process still runs to completion). */
  maxStdoutBytes?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export class CommandError extends Error {
  readonly result: RunResult;
  constructor(command: string, result: RunResult) {
    super(`${command} exited with ${result.code ?? result.signal}: ${result.stderr.trim().split("\n").slice(-3).join(" / ")}`);
    this.name = "CommandError";
    this.result = result;
  }
}

export function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ["pipe", "pipe", "pipe"],
      signal: options.signal,
    });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => {
      options.onOutput?.(chunk, "stdout");
      if (options.maxStdoutBytes === undefined || stdoutBytes < options.maxStdoutBytes) stdout.push(chunk);
      stdoutBytes += chunk.byteLength;
    });
    child.stderr.on("data", (chunk: Buffer) => {
      options.onOutput?.(chunk, "stderr");
      stderr.push(chunk);
    });
    child.on("error", (error) => reject(coerceError(error)));
    child.on("close", (code, signal) => resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString("utf8") }));
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input);
  });
}

/** Like run(), but rejects with CommandError unless the command exits 0. */
export async function runChecked(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new CommandError(`${command} ${args.slice(0, 3).join(" ")}`, result);
  return result;
}

/** The environment for git commands Airlock runs itself: no user or system config, no prompts. */
export function gitEnv(hostEnv: Readonly<Record<string, string | undefined>>, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: hostEnv.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: "/nonexistent",
    LANG: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_LFS_SKIP_SMUDGE: "1",
    GIT_ASKPASS: "/bin/false",
    // Transports git may use at all: never ext:: or other remote helpers that run commands.
    GIT_ALLOW_PROTOCOL: "file:git:http:https:ssh",
    ...extra,
  };
}
