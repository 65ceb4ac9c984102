/**
 * One job's launcher: a small /bin/sh kept running inside the job's cgroup, which starts each
 * step's bwrap on request, so every process of a step is born in the cgroup.
 *
 * Why not move each step's sandbox into the cgroup instead: writing a pid to cgroup.procs waits
 * for an RCU grace period (the cgroup threadgroup lock), about 10 ms on a busy host, on every
 * step. The launcher is moved once, when the job's sandbox is made. Forking a small shell is also
 * cheaper than forking the executor's Node process.
 *
 * Protocol: Node writes one line per step to the shell's stdin:
 *   ( unset SHLVL PWD OLDPWD; export 'K=V' ...; printf '%s\0' OPTIONS | ( exec bwrap --args 6 -- COMMAND 6<&0 5<SECCOMP </dev/null ) ); s=$?;
 *     printf %s TOKEN; printf %s TOKEN >&2; echo "done $s" >&3
 * fd 1 and 2 carry every step's stdout and stderr; each step's output ends with TOKEN (random per
 * step, never shown to the step), which is cut out. fd 3 carries bwrap's --json-status-fd lines
 * (the sandbox's pid, its exit code), then "done <status>". A step has ended once "done" and
 * both tokens have arrived. bwrap's options (host paths) reach it through a pipe on fd 6, so its
 * argv, which the step can read as /proc/1/cmdline, holds only the command. Secrets reach bwrap's environment through the shell's memory: never
 * argv (which every local user can read), never a file.
 *
 * States: IDLE <-> RUNNING (one step at a time: the job runner awaits each), GONE once the shell
 * exited; a sandbox then starts a new launcher for its next step.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { SandboxError } from "../../protocol/index.ts";
import type { StepIO } from "../runtime.ts";
import { FD, type BwrapInvocation } from "./args.ts";

const SETPRIV = "/usr/bin/setpriv";
const BASH = "/bin/bash";
/** Closes every descriptor but 0-3 (control, output, status); run once, first thing. */
const CLOSE_INHERITED_FDS = {
  bash: `for f in /proc/$$/fd/*; do f=\${f##*/}; case $f in 0|1|2|3) ;; *) eval "exec $f>&-" 2>/dev/null ;; esac; done\n`,
  // POSIX sh only knows descriptors 0-9 (and `exec 12>&-` would end it).
  sh: "exec 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-\n",
};
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface LaunchResult {
  /** bwrap's report of the step's exit code; undefined when bwrap failed before running it. */
  exitCode: number | undefined;
  /** The shell's status for the bwrap process. */
  status: number | undefined;
  /** Set when the launcher itself went away mid-step. */
  problem?: string | undefined;
}

function quote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * Passes stream bytes to `emit` until `token` appears. Only a chunk's tail that could be the start
 * of the token is held back (until the next chunk tells), so output is never delayed otherwise.
 */
class TokenCutter {
  private readonly token: Buffer;
  private readonly emit: (bytes: Buffer) => void;
  private held = Buffer.alloc(0);
  found = false;

  constructor(token: string, emit: (bytes: Buffer) => void) {
    this.token = Buffer.from(token);
    this.emit = emit;
  }

  feed(chunk: Buffer): void {
    if (this.found) return;
    const data = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    const at = data.indexOf(this.token);
    if (at >= 0) {
      if (at > 0) this.emit(data.subarray(0, at));
      this.held = Buffer.alloc(0);
      this.found = true;
      return;
    }
    const keep = this.partialTokenAtEnd(data);
    if (data.length > keep) this.emit(data.subarray(0, data.length - keep));
    this.held = Buffer.from(data.subarray(data.length - keep));
  }

  /** Length of the longest tail of `data` that is a proper prefix of the token. */
  private partialTokenAtEnd(data: Buffer): number {
    for (let length = Math.min(this.token.length - 1, data.length); length > 0; length -= 1) {
      if (data.subarray(data.length - length).equals(this.token.subarray(0, length))) return length;
    }
    return 0;
  }
}

interface Running {
  stdout: TokenCutter;
  stderr: TokenCutter;
  exitCode: number | undefined;
  status: number | undefined;
  done: boolean;
  onSandboxPid: (pid: number) => void;
  finish: (result: LaunchResult) => void;
}

export class Launcher {
  private readonly child: ChildProcess;
  private running: Running | undefined;
  private statusText = "";
  private gone = false;

  private constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.on("data", (chunk: Buffer) => this.output(chunk, "stdout"));
    child.stderr?.on("data", (chunk: Buffer) => this.output(chunk, "stderr"));
    (child.stdio[3] as Readable).on("data", (chunk: Buffer) => this.status(chunk));
    child.stdin?.on("error", () => undefined);
    child.on("error", () => this.exited());
    child.on("exit", () => this.exited());
  }

  /** Starts a launcher; `join` puts it in the job's cgroup, before it is asked for anything. */
  static async start(join: (pid: number) => Promise<void>): Promise<Launcher> {
    // bash can close descriptors above 9 (dash cannot): the executor may have inherited some from
    // whatever started it, and bwrap hands every open descriptor to the step.
    const shell = existsSync(BASH) ? BASH : "/bin/sh";
    // With setpriv the shell dies with the executor, and with it every step (bwrap --die-with-parent).
    const [command, args] = existsSync(SETPRIV) ? [SETPRIV, ["--pdeathsig", "KILL", "--", shell, "-s"]] : [shell, ["-s"]];
    // cwd "/": the shell exports PWD, which bwrap (pid 1 of the sandbox, its environ readable there) inherits.
    const child = spawn(command, args, { env: {}, cwd: "/", stdio: ["pipe", "pipe", "pipe", "pipe"], detached: true });
    if (child.pid === undefined) throw new SandboxError(`could not start the step launcher (${shell})`);
    const launcher = new Launcher(child);
    try {
      await join(child.pid);
    } catch (error) {
      launcher.stop();
      throw error;
    }
    child.stdin?.write(shell === BASH ? CLOSE_INHERITED_FDS.bash : CLOSE_INHERITED_FDS.sh);
    return launcher;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return !this.gone;
  }

  /** Runs bwrap with `args` and `env`; output goes to `io` as it comes. */
  run(bwrap: string, args: BwrapInvocation, env: Readonly<Record<string, string>>, seccompFile: string, io: StepIO, onSandboxPid: (pid: number) => void): Promise<LaunchResult> {
    if (this.gone) return Promise.resolve({ exitCode: undefined, status: undefined, problem: "the step launcher is gone" });
    if (this.running) throw new SandboxError("a step is already running in this sandbox");
    const token = `airlock-end-${randomBytes(16).toString("hex")}`;
    const exports = Object.entries(env)
      .filter(([name]) => ENV_NAME.test(name))
      .map(([name, value]) => quote(`${name}=${value}`));
    const line =
      `( unset SHLVL PWD OLDPWD;${exports.length ? ` export ${exports.join(" ")};` : ""} printf '%s\\0' ${args.options.map(quote).join(" ")} | ` +
      `( exec ${quote(bwrap)} --args ${FD.args} -- ${args.command.map(quote).join(" ")} ${FD.args}<&0 ${FD.seccomp}<${quote(seccompFile)} </dev/null ) ); ` +
      `s=$?; printf %s ${token}; printf %s ${token} >&2; echo "done $s" >&3\n`;
    return new Promise<LaunchResult>((resolve) => {
      this.running = {
        stdout: new TokenCutter(token, (bytes) => io.write(bytes, "stdout")),
        stderr: new TokenCutter(token, (bytes) => io.write(bytes, "stderr")),
        exitCode: undefined,
        status: undefined,
        done: false,
        onSandboxPid,
        finish: (result) => {
          this.running = undefined;
          resolve(result);
        },
      };
      (this.child.stdin as Writable).write(line);
    });
  }

  private output(chunk: Buffer, stream: "stdout" | "stderr"): void {
    this.running?.[stream].feed(chunk);
    this.settle();
  }

  private status(chunk: Buffer): void {
    this.statusText += chunk.toString("utf8");
    let newline: number;
    while ((newline = this.statusText.indexOf("\n")) >= 0) {
      const line = this.statusText.slice(0, newline).trim();
      this.statusText = this.statusText.slice(newline + 1);
      const running = this.running;
      if (!running) continue;
      const done = /^done (\d+)$/.exec(line);
      if (done) {
        running.status = Number(done[1]);
        running.done = true;
        continue;
      }
      try {
        const report = JSON.parse(line) as { "child-pid"?: number; "exit-code"?: number };
        if (typeof report["child-pid"] === "number") running.onSandboxPid(report["child-pid"]);
        if (typeof report["exit-code"] === "number") running.exitCode = report["exit-code"];
      } catch {
        // not a status line of ours
      }
    }
    this.settle();
  }

  private settle(): void {
    const running = this.running;
    if (running?.done && running.stdout.found && running.stderr.found) running.finish({ exitCode: running.exitCode, status: running.status });
  }

  private exited(): void {
    if (this.gone) return;
    this.gone = true;
    this.running?.finish({ exitCode: this.running.exitCode, status: undefined, problem: "the step launcher exited" });
  }

  /** Ends the shell (a running step is killed through the cgroup, not here). */
  stop(): void {
    this.child.stdin?.end();
    if (!this.gone && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }
}
