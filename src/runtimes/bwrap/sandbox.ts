/**
 * One job's bwrap sandbox: a cgroup carrying the job's limits, a launcher shell living in that
 * cgroup (launcher.ts), and one bwrap process per step, started by the launcher so that all of a
 * step's processes are born in the cgroup.
 *
 * A step, in order: resolve its image (unpacking it on first use); have the launcher run bwrap,
 * which reports the pid of the sandbox's init (pid 1 of the new pid namespace); stream output to
 * `io` as it comes. The step ends when bwrap exits: its init dying takes the whole pid namespace
 * with it, and the cgroup is swept as well (sparing the launcher). The cgroup's counters then
 * tell whether the memory or pids limit ended the step.
 * Abort (timeout, cancel): SIGKILL the sandbox's init and everything in the cgroup but the launcher.
 * States: READY -> (exec)* -> DESTROYED; `exec` calls are sequential (the job runner awaits each).
 */
import { existsSync, lstatSync, realpathSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { coerceError, formatSize } from "../../protocol/index.ts";
import { RESOLV_CONF, type Sandbox, type SandboxSpec, type StepIO, type StepOutcome, type StepRun } from "../runtime.ts";
import { bwrapArgs, stepEnvironment, WORKSPACE_MOUNT, type StepNetwork } from "./args.ts";
import type { CgroupCounters, CgroupLimits, Cgroups } from "./cgroups.ts";
import type { ImageStore, ResolvedImage } from "../images/store.ts";
import { Launcher } from "./launcher.ts";

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

/**
 * The egress mounts of a step, if the job has a network. /etc/resolv.conf can only be mounted
 * over a regular file the image has (the rootfs is read-only); without one, names resolve
 * through the proxy only.
 */
function stepNetwork(spec: SandboxSpec, rootfs: string): StepNetwork | undefined {
  if (!spec.network) return undefined;
  const resolv = lstatSync(join(rootfs, "etc", "resolv.conf"), { throwIfNoEntry: false });
  const resolvConf = join(dirname(spec.network.gatewaySocket), RESOLV_CONF);
  return { ...spec.network, ...(resolv?.isFile() && existsSync(resolvConf) ? { resolvConf } : {}) };
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
  private launcherProcess: Launcher | undefined;
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
    const spare = this.launcherProcess?.alive && this.launcherProcess.pid !== undefined ? [this.launcherProcess.pid] : [];
    await this.context.cgroups.killAll(this.group, spare).catch((error: unknown) => this.spec.logger.warn("cgroup sweep failed", { error: String(error) }));
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

  /** The launcher in the job's cgroup (a new one when the last is gone). */
  async launcher(): Promise<Launcher> {
    if (!this.launcherProcess?.alive) this.launcherProcess = await Launcher.start((pid) => this.context.cgroups.add(this.group, pid));
    return this.launcherProcess;
  }

  private async runBwrap(run: StepRun, io: StepIO, signal: AbortSignal, image: ResolvedImage, cwd: string): Promise<BwrapEnd> {
    const args = bwrapArgs({ rootfs: image.rootfs, workspace: this.spec.workspace, cwd, tmpBytes: this.spec.resources.diskBytes, network: stepNetwork(this.spec, image.rootfs) }, run.script);
    let launcher: Launcher;
    try {
      launcher = await this.launcher();
    } catch (error) {
      return { exitCode: null, killed: false, started: false, problem: coerceError(error).message };
    }
    let sandboxPid: number | undefined;
    let killed = false;
    const kill = (): void => {
      killed = true;
      signalPid(sandboxPid);
      // Everything of the step, wherever it is; the launcher stays for the next step.
      void this.context.cgroups.killAll(this.group, launcher.pid === undefined ? [] : [launcher.pid]).catch(() => undefined);
    };
    signal.addEventListener("abort", kill, { once: true });
    try {
      const result = await launcher.run(this.context.bwrap, args, stepEnvironment(image.config.env, run.env), this.context.seccompFile, io, (pid) => {
        sandboxPid = pid;
        if (signal.aborted) kill();
      });
      if (killed || signal.aborted) return { exitCode: null, killed: true, started: result.exitCode !== undefined };
      if (result.exitCode !== undefined) return { exitCode: result.exitCode, killed: false, started: true };
      return { exitCode: result.status ?? null, killed: false, started: false, problem: result.problem };
    } finally {
      signal.removeEventListener("abort", kill);
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.launcherProcess?.stop();
    await this.context.cgroups.remove(this.group);
  }
}
