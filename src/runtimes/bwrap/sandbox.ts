/**
 * One job's bwrap sandbox: a cgroup carrying the job's limits, and one bwrap process per step.
 *
 * A step, in order: resolve its image (unpacking it on first use); spawn bwrap detached, with
 * `--json-status-fd` and `--block-fd`; bwrap reports the pid of the sandbox's init (pid 1 of the
 * new pid namespace) and waits, having set up its mounts but started nothing; we move that pid
 * into the job's cgroup and unblock it, so every process of the step runs inside the cgroup.
 * Output streams to `io` as it comes. The step ends when bwrap exits; the sandbox's init dying
 * takes the whole pid namespace with it, and we sweep the cgroup as well.
 * Abort (timeout, cancel): SIGKILL the sandbox's init, then everything in the cgroup.
 * States: READY -> (exec)* -> DESTROYED; `exec` calls are sequential (the job runner awaits each).
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, realpathSync, statSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import type { Readable, Writable } from "node:stream";
import { coerceError, formatSize } from "../../protocol/index.ts";
import type { Sandbox, SandboxSpec, StepIO, StepOutcome, StepRun } from "../runtime.ts";
import { bwrapArgs, FD, stepEnvironment, WORKSPACE_MOUNT } from "./args.ts";
import type { CgroupCounters, CgroupLimits, Cgroups } from "./cgroups.ts";
import type { ImageStore, ResolvedImage } from "./images/store.ts";

export interface SandboxContext {
  bwrap: string;
  seccompFile: string;
  images: ImageStore;
  cgroups: Cgroups;
  /** For steps that name no image. */
  defaultImage: string;
}

interface BwrapEnd {
  exitCode: number | null;
  killed: boolean;
  /** False when bwrap failed before the step's shell started. */
  started: boolean;
  problem?: string | undefined;
}

function signalPid(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

export class BwrapSandbox implements Sandbox {
  readonly id: string;
  private readonly spec: SandboxSpec;
  private readonly context: SandboxContext;
  private readonly group: string;
  private readonly limits: CgroupLimits;
  private counters: CgroupCounters = { oomKills: 0, pidsRefused: 0 };
  private destroyed = false;

  constructor(spec: SandboxSpec, context: SandboxContext, group: string, limits: CgroupLimits) {
    this.spec = spec;
    this.context = context;
    this.group = group;
    this.limits = limits;
    this.id = `bwrap-${group}`;
  }

  async exec(run: StepRun, io: StepIO, signal: AbortSignal): Promise<StepOutcome> {
    if (this.destroyed) return { exitCode: null, message: "the sandbox was already destroyed" };
    if (signal.aborted) return { exitCode: null, limit: "killed" };
    const cwd = this.stepDir(run.step.dir);
    if (typeof cwd !== "string") return { exitCode: null, message: cwd.problem };
    const reference = run.step.image ?? this.context.defaultImage;
    if (!run.step.image) io.write(Buffer.from(`[airlock] step ${run.step.key} names no image; using the executor's default image ${reference}\n`), "stderr");
    let image: ResolvedImage;
    try {
      image = await this.context.images.resolve(reference, signal);
    } catch (error) {
      if (signal.aborted) return { exitCode: null, limit: "killed" };
      return { exitCode: null, message: coerceError(error).message };
    }
    if (image.unpacked) io.write(Buffer.from(`[airlock] image ${reference} (${image.id.slice(0, 19)}) unpacked from ${image.source}\n`), "stderr");
    const end = await this.runBwrap(run, io, signal, image, cwd);
    // Anything the step left (it cannot outlive its pid namespace, but the cgroup is the proof).
    await this.context.cgroups.killAll(this.group).catch((error: unknown) => this.spec.logger.warn("cgroup sweep failed", { error: String(error) }));
    // Steps run one after another in the job's group: the counters' growth is this step's.
    const before = this.counters;
    this.counters = this.context.cgroups.counters(this.group);
    return this.outcome(end, before, this.counters);
  }

  private outcome(end: BwrapEnd, before: CgroupCounters, after: CgroupCounters): StepOutcome {
    const oomKills = after.oomKills - before.oomKills;
    const pidsRefused = after.pidsRefused - before.pidsRefused;
    if (end.exitCode !== 0 && oomKills > 0) {
      const limit = this.limits.memoryBytes ? ` of ${formatSize(this.limits.memoryBytes)}` : "";
      return { exitCode: end.exitCode, limit: "memory", message: `out of memory: the step reached its memory limit${limit} and the kernel killed ${oomKills} of its processes` };
    }
    if (end.exitCode !== 0 && pidsRefused > 0) {
      return { exitCode: end.exitCode, limit: "pids", message: `the step reached its limit of ${this.limits.pids ?? "?"} processes (pids); ${pidsRefused} fork(s) were refused` };
    }
    if (end.killed) return { exitCode: null, limit: "killed" };
    if (!end.started) return { exitCode: end.exitCode, message: `the sandbox could not start the step${end.problem ? `: ${end.problem}` : ""}` };
    return { exitCode: end.exitCode };
  }

  /**
   * The step's working dir inside the sandbox, if it is a directory inside the workspace.
   * Synchronous on purpose, like the rest of a step's start: these are single local syscalls, and
   * a hop through the thread pool costs more than they do (milliseconds on a busy host).
   */
  private stepDir(dir: string): string | { problem: string } {
    const host = resolve(this.spec.workspace, dir);
    try {
      const real = realpathSync(host);
      const root = realpathSync(this.spec.workspace);
      if (real !== root && !real.startsWith(root + sep)) return { problem: "step dir leads outside the workspace" };
      if (!statSync(real).isDirectory()) return { problem: `step dir ${dir} is not a directory` };
      return join(WORKSPACE_MOUNT, relative(root, real));
    } catch {
      return { problem: `step dir "${dir}" does not exist in the workspace` };
    }
  }

  private runBwrap(run: StepRun, io: StepIO, signal: AbortSignal, image: ResolvedImage, cwd: string): Promise<BwrapEnd> {
    const args = bwrapArgs({ rootfs: image.rootfs, workspace: this.spec.workspace, cwd, tmpBytes: this.spec.resources.diskBytes }, run.script);
    const seccomp = openSync(this.context.seccompFile, "r");
    let child;
    try {
      child = spawn(this.context.bwrap, args, {
        env: stepEnvironment(image.config.env, run.env),
        stdio: ["ignore", "pipe", "pipe", "pipe", "pipe", seccomp],
        detached: true,
      });
    } finally {
      closeSync(seccomp);
    }
    const status = child.stdio[FD.status] as Readable;
    const block = child.stdio[FD.block] as Writable;
    let sandboxPid: number | undefined;
    let exitCode: number | undefined;
    let killed = false;
    let problem: string | undefined;
    const stop = (): void => {
      signalPid(sandboxPid);
      signalPid(child.pid);
      void this.context.cgroups.killAll(this.group).catch(() => undefined);
    };
    const kill = (): void => {
      killed = true;
      stop();
    };
    signal.addEventListener("abort", kill, { once: true });
    block.on("error", () => undefined);
    let statusText = "";
    status.on("data", (chunk: Buffer) => {
      statusText += chunk.toString("utf8");
      let newline: number;
      while ((newline = statusText.indexOf("\n")) >= 0) {
        const line = statusText.slice(0, newline);
        statusText = statusText.slice(newline + 1);
        let report: { "child-pid"?: number; "exit-code"?: number };
        try {
          report = JSON.parse(line) as typeof report;
        } catch {
          continue;
        }
        if (report["exit-code"] !== undefined) exitCode = report["exit-code"];
        if (report["child-pid"] !== undefined && sandboxPid === undefined) {
          sandboxPid = report["child-pid"];
          try {
            this.context.cgroups.add(this.group, sandboxPid);
            block.end("1");
          } catch (error) {
            problem = `could not move it into its cgroup: ${coerceError(error).message}`;
            stop();
          }
        }
      }
    });
    child.stdout?.on("data", (chunk: Buffer) => io.write(chunk, "stdout"));
    child.stderr?.on("data", (chunk: Buffer) => io.write(chunk, "stderr"));
    return new Promise<BwrapEnd>((done) => {
      child.on("error", (error) => {
        signal.removeEventListener("abort", kill);
        done({ exitCode: null, killed: false, started: false, problem: `could not run ${this.context.bwrap}: ${error.message}` });
      });
      child.on("close", (code) => {
        signal.removeEventListener("abort", kill);
        if (killed || signal.aborted) done({ exitCode: null, killed: true, started: exitCode !== undefined });
        else if (exitCode !== undefined) done({ exitCode, killed: false, started: true });
        else done({ exitCode: code ?? null, killed: false, started: false, problem });
      });
    });
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.context.cgroups.remove(this.group);
  }
}
