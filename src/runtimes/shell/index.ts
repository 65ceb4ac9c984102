/**
 * The shell runtime: steps run as host processes in the workspace, with no isolation at all.
 * For development and trusted jobs only; it takes no job that asks for more than `none`.
 * Limits are wall time only (timeouts and cancel kill the step's whole process tree).
 */
import { spawn } from "node:child_process";
import { existsSync, realpathSync, statSync } from "node:fs";
import { mkdir, realpath } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { LABEL, isLeftover } from "../labels.ts";
import type { ProbeResult, Runtime, Sandbox, SandboxSpec, StepIO, StepOutcome, StepRun } from "../runtime.ts";
import { openPidWindow, type PidWindow } from "./pid-window.ts";
import { findMarked, killGroup, killTree, MARKER_VARIABLE } from "./process-tree.ts";

const SETPRIV = "/usr/bin/setpriv";
const HAS_SETPRIV = existsSync(SETPRIV);

export interface ShellRuntimeOptions {
  /** PATH for steps. */
  path: string;
}

export class ShellRuntime implements Runtime {
  readonly name = "shell";
  readonly isolation = "none" as const;
  private readonly options: ShellRuntimeOptions;

  constructor(options: ShellRuntimeOptions) {
    this.options = options;
  }

  async probe(): Promise<ProbeResult> {
    if (!existsSync("/bin/sh")) return { usable: false, detail: "/bin/sh is missing" };
    return { usable: true, detail: "runs steps as host processes (no isolation; trusted jobs only)" };
  }

  async createSandbox(spec: SandboxSpec): Promise<Sandbox> {
    const home = join(spec.scratchDir, "home");
    const tmp = join(spec.scratchDir, "tmp");
    await Promise.all([mkdir(home, { recursive: true }), mkdir(tmp, { recursive: true })]);
    return new ShellSandbox(spec, { PATH: this.options.path, HOME: home, TMPDIR: tmp, LANG: "C.UTF-8" }, await realpath(spec.workspace));
  }

  async reapLeftovers(): Promise<number> {
    const pids = findMarked((_marker, environ) => isLeftover(labelsFromEnviron(environ)));
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    return pids.length;
  }
}

const LABEL_VARIABLES: Record<string, string> = {
  AIRLOCK_EXECUTOR_PID: LABEL.executorPid,
  AIRLOCK_HOST: LABEL.host,
};

function labelsFromEnviron(environ: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of environ.split("\0")) {
    const equals = pair.indexOf("=");
    const label = LABEL_VARIABLES[pair.slice(0, equals)];
    if (label) labels[label] = pair.slice(equals + 1);
  }
  return labels;
}

class ShellSandbox implements Sandbox {
  readonly id: string;
  private readonly spec: SandboxSpec;
  private readonly baseEnv: Record<string, string>;
  /** Opened before any step: the sandbox's processes all have pids allocated after it. */
  private readonly pids: PidWindow | undefined = openPidWindow();

  /** The workspace's real path, for the check that a step's dir stays inside it. */
  private readonly realWorkspace: string;

  constructor(spec: SandboxSpec, baseEnv: Record<string, string>, realWorkspace: string) {
    this.spec = spec;
    this.realWorkspace = realWorkspace;
    this.id = `shell-${spec.jobId}-${spec.attempt}-${process.pid}`;
    this.baseEnv = {
      ...baseEnv,
      [MARKER_VARIABLE]: this.id,
      AIRLOCK_EXECUTOR_PID: spec.labels[LABEL.executorPid] ?? String(process.pid),
      AIRLOCK_HOST: spec.labels[LABEL.host] ?? "",
    };
  }

  async exec(run: StepRun, io: StepIO, signal: AbortSignal): Promise<StepOutcome> {
    const cwd = resolve(this.spec.workspace, run.step.dir);
    const problem = this.dirProblem(cwd);
    if (problem) return { exitCode: null, message: problem };
    const usePdeathsig = HAS_SETPRIV;
    const [command, args] = usePdeathsig
      ? [SETPRIV, ["--pdeathsig", "KILL", "--", "/bin/sh", "-c", run.script]]
      : ["/bin/sh", ["-c", run.script]];
    return new Promise<StepOutcome>((done) => {
      const child = spawn(command, args, {
        cwd,
        env: { ...this.baseEnv, ...run.env, [MARKER_VARIABLE]: this.id },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      const group = child.pid;
      let killed = false;
      const kill = (): void => {
        killed = true;
        killTree(group, this.id, this.pids);
      };
      signal.addEventListener("abort", kill, { once: true });
      child.stdout.on("data", (chunk: Buffer) => io.write(chunk, "stdout"));
      child.stderr.on("data", (chunk: Buffer) => io.write(chunk, "stderr"));
      child.on("error", (error) => {
        signal.removeEventListener("abort", kill);
        done({ exitCode: null, message: `could not start /bin/sh: ${error.message}` });
      });
      let straggler: NodeJS.Timeout | undefined;
      child.on("exit", () => {
        // The step is over when its shell exits; whatever it left running in its process group goes
        // too. Scanning /proc for escapees (setsid) costs more, so it happens only when one still
        // holds the step's output open; the rest are found when the sandbox is destroyed.
        killGroup(group);
        straggler = setTimeout(() => killTree(group, this.id, this.pids), 100);
      });
      child.on("close", (code, exitSignal) => {
        clearTimeout(straggler);
        signal.removeEventListener("abort", kill);
        if (killed || signal.aborted) done({ exitCode: null, limit: "killed" });
        else if (code === null) done({ exitCode: null, message: `killed by ${exitSignal ?? "a signal"}` });
        else done({ exitCode: code });
      });
    });
  }

  /** Synchronous: a stat and a realpath of a local path, reads that cost less than two thread-pool hand-offs. */
  private dirProblem(dir: string): string | undefined {
    try {
      const info = statSync(dir);
      if (!info.isDirectory()) return `step dir ${dir} is not a directory`;
      const real = dir === this.spec.workspace ? this.realWorkspace : realpathSync(dir);
      if (real !== this.realWorkspace && !real.startsWith(this.realWorkspace + sep)) return "step dir leads outside the workspace";
      return undefined;
    } catch {
      return `step dir "${dir.slice(this.spec.workspace.length + 1) || "."}" does not exist in the workspace`;
    }
  }

  async destroy(): Promise<void> {
    killTree(undefined, this.id, this.pids);
  }
}
