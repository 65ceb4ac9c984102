/**
 * One job's microVM. `create` makes the job's disks (the workspace, copied in with
 * mkfs.ext4 -d; an empty scratch disk for what steps write outside it; a blank return disk),
 * boots the VM and returns once its agent is up (said hello) and the host has written the disks'
 * file systems (which overlaps the boot). The guest then loads the disk drivers and mounts the
 * disks while the host gets the first step ready: `disksReady`, which every `exec` awaits (and
 * `processes`, the agent answering one request at a time). Each `exec` hot-plugs the step's image disk (once per
 * image per VM) and has the agent run the step; `destroy` has the agent write the workspace as a
 * tar onto the return disk, reads that back as a plain byte stream (never mounted), unpacks it
 * beside the host workspace with path checks and swaps it in, then kills QEMU. A job with a
 * network gets a VM with one network device whose only way out is its egress gateway (net.ts).
 *
 * States: UP -> (disks mounted) READY -> RUNNING(step) -> READY ... -> RETURNING (tar) -> GONE. One step at a time
 * (the job runner awaits each). When a step's signal aborts, the agent is told to kill the step
 * (its cgroup, at once); if it does not confirm within KILL_GRACE_MS the VM is killed. A job
 * whose step was stopped gets no workspace back: it failed or was canceled, and the VM is killed
 * at destroy without waiting for a copy. `destroy` is idempotent (one shared promise).
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { coerceError, formatSize, SandboxError, StepFailedError } from "../../protocol/index.ts";
import { LABEL } from "../labels.ts";
import type { Sandbox, SandboxSpec, StepIO, StepOutcome, StepRun } from "../runtime.ts";
import { StepAborted, until } from "../until.ts";
import type { AcceleratorChoice } from "./accel.ts";
import { MAX_FRAME } from "./channel.ts";
import { createSparse, DiskTooSmall, makeExt4 } from "./disks.ts";
import type { Guest } from "./guest.ts";
import type { ImageDisks } from "./image-disks.ts";
import { GATEWAY, networkInitrd } from "./net.ts";
import { JOB_FILE, removeWarmDirs, type VmShape, type WarmVm } from "./pool.ts";
import { extractTar } from "./untar.ts";
import { Vm } from "./vm.ts";

export const DEFAULT_DISK_BYTES = 8 * 1024 ** 3;
export const DEFAULT_MEMORY_BYTES = 1024 ** 3;
export const DEFAULT_PIDS_LIMIT = 4096;
/** Guest memory beyond the job's limit: the kernel, the agent, page tables. */
export const GUEST_OVERHEAD_MIB = 128;
const KILL_GRACE_MS = 10_000;
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** Image disks are SCSI luns 0, 1, ... (the workspace and scratch disks are virtio-blk). */
const FIRST_IMAGE_LUN = 0;
const MAX_LUN = 255;
/** What the agent takes (agent.h: run_request.env). */
const MAX_ENV = 1023;

export interface MicroVmDeps {
  guest: Guest;
  accelerator: AcceleratorChoice;
  images: ImageDisks;
  defaultImage: string;
  hostPath: string;
  cpuLimit: number;
  bootTimeoutMs: number;
  /** Boot with airlock.debug: the guest prints its boot stages on its console (`vm.consoleText`). */
  debugBoot?: boolean | undefined;
}

export class MicroVmSandbox implements Sandbox {
  readonly id: string;
  readonly vm: Vm;
  readonly accelerator: AcceleratorChoice;
  /** Resolves with the ms from `create`'s start until the guest had mounted its disks. */
  readonly disksReady: Promise<number>;
  private readonly spec: SandboxSpec;
  private readonly deps: MicroVmDeps;
  private readonly disks: string[];
  private readonly returnDisk: string;
  /** The warm VM this sandbox took (its directories are removed at destroy), if it took one. */
  private readonly warmVm: WarmVm | undefined;
  private readonly luns = new Map<string, number>();
  /** Per step: ms to find its image's disk (the per-image cache) and hot-plug it (0 when already attached); for the benchmark. */
  readonly imageAttachMs: number[] = [];
  private readonly destroyed = new AbortController();
  private running: Promise<StepOutcome> | undefined;
  private destroying: Promise<void> | undefined;
  private stepsRun = 0;
  private stepStopped = false;

  private constructor(id: string, vm: Vm, spec: SandboxSpec, deps: MicroVmDeps, disks: string[], returnDisk: string, started: number, warmVm?: WarmVm) {
    this.id = id;
    this.warmVm = warmVm;
    this.returnDisk = returnDisk;
    this.vm = vm;
    this.spec = spec;
    this.deps = deps;
    this.disks = disks;
    this.accelerator = deps.accelerator;
    this.disksReady = this.mountDisks(started);
    // Awaited by exec; a failure nobody waits for (the job was destroyed first) is no error.
    this.disksReady.catch(() => undefined);
  }

  /** Has the agent mount the workspace and scratch disks once their modules are loaded. */
  private async mountDisks(started: number): Promise<number> {
    let mounted = "";
    await this.vm.channel.request("M", "", (frame) => {
      if (frame.type !== "M") throw new SandboxError(`the guest agent sent "${frame.type}" while mounting its disks`);
      mounted = frame.payload.toString("utf8");
      return true;
    });
    if (mounted !== "ok") throw new SandboxError(`the VM could not mount its disks: ${mounted.replace(/^error=/, "")}`);
    const ms = performance.now() - started;
    this.spec.logger.info("microVM disks mounted", { sandbox: this.id, ms: Math.round(ms) });
    return ms;
  }

  /** True when the job took a pre-booted VM from the warm pool. */
  get warm(): boolean {
    return this.warmVm !== undefined;
  }

  /** True when its warm VM was restored from the pool's snapshot rather than booted. */
  get restored(): boolean {
    return this.warmVm?.restored ?? false;
  }

  /** The warm VM's directory, holding its disks. */
  get warmDir(): string | undefined {
    return this.warmVm?.dir;
  }

  /** The shape of VM a job needs (what `create` boots, and what a warm VM must match). */
  static shapeFor(spec: SandboxSpec, deps: Pick<MicroVmDeps, "cpuLimit">): VmShape {
    return {
      cpus: Math.max(1, Math.min(Math.ceil(spec.resources.cpus ?? 1), deps.cpuLimit)),
      memoryMiB: Math.ceil((spec.resources.memoryBytes ?? DEFAULT_MEMORY_BYTES) / 1024 ** 2) + GUEST_OVERHEAD_MIB,
      diskBytes: spec.resources.diskBytes ?? DEFAULT_DISK_BYTES,
    };
  }

  /**
   * A sandbox on a warm VM (pool.ts) that the job now owns: its workspace disk gets the job's
   * workspace, then the agent mounts. On any failure the VM is destroyed, never returned.
   */
  static async adopt(spec: SandboxSpec, deps: MicroVmDeps, warm: WarmVm): Promise<MicroVmSandbox> {
    const started = performance.now();
    try {
      const info = await stat(spec.workspace).catch(() => undefined);
      if (!info?.isDirectory()) throw new SandboxError(`workspace ${spec.workspace} is not a directory`);
      await writeFile(join(warm.dir, JOB_FILE), `AIRLOCK_JOB=${spec.jobId}\nAIRLOCK_ATTEMPT=${spec.attempt}\n`);
      if (Boolean(spec.network) !== Boolean(warm.gatewayLink)) throw new SandboxError("a warm VM's network device does not match its job's network");
      // The guest's forwarder now reaches this job's gateway, and no other.
      if (spec.network && warm.gatewayLink) await symlink(spec.network.gatewaySocket, warm.gatewayLink);
      await makeExt4({ path: warm.disks[0], sizeBytes: warm.shape.diskBytes, from: spec.workspace, label: "workspace", hostPath: deps.hostPath });
    } catch (error) {
      await warm.vm.kill();
      await removeWarmDirs(warm);
      if (error instanceof DiskTooSmall) throw new StepFailedError("prepare", undefined, `the workspace does not fit in the job's disk limit of ${formatSize(warm.shape.diskBytes)}`);
      throw error;
    }
    // Named like a cold one (the job's log shows it); the pool's name is the VM's, for the reaper.
    const id = `microvm-${spec.jobId}-${spec.attempt}-${randomBytes(3).toString("hex")}-${deps.accelerator.accelerator}`;
    spec.logger.info("microVM taken from the warm pool", { sandbox: id, vm: warm.id, accelerator: deps.accelerator.accelerator, bootMs: warm.vm.bootMs, restored: warm.restored });
    return new MicroVmSandbox(id, warm.vm, spec, deps, [...warm.disks], warm.disks[2], started, warm);
  }

  static async create(spec: SandboxSpec, deps: MicroVmDeps, signal: AbortSignal): Promise<MicroVmSandbox> {
    const started = performance.now();
    const info = await stat(spec.workspace).catch(() => undefined);
    if (!info?.isDirectory()) throw new SandboxError(`workspace ${spec.workspace} is not a directory`);
    const id = `microvm-${spec.jobId}-${spec.attempt}-${randomBytes(3).toString("hex")}-${deps.accelerator.accelerator}`;
    const diskBytes = spec.resources.diskBytes ?? DEFAULT_DISK_BYTES;
    await mkdir(spec.scratchDir, { recursive: true, mode: 0o700 });
    const disks = [join(spec.scratchDir, "workspace.ext4"), join(spec.scratchDir, "scratch.ext4"), join(spec.scratchDir, "return.tar")];
    const [workspaceDisk, scratchDisk, returnDisk] = disks as [string, string, string];
    // The disk files exist before QEMU opens them; their file systems are written while the guest
    // kernel boots, and the agent mounts them only when told they are complete.
    await Promise.all(disks.map((disk) => createSparse(disk, diskBytes)));
    const filled = Promise.all([
      makeExt4({ path: workspaceDisk, sizeBytes: diskBytes, from: spec.workspace, label: "workspace", hostPath: deps.hostPath }),
      makeExt4({ path: scratchDisk, sizeBytes: diskBytes, label: "scratch", hostPath: deps.hostPath }),
    ]);
    // A workspace that does not fit stops the boot at once.
    const fillFailed = new AbortController();
    let fillError: unknown;
    filled.catch((error: unknown) => {
      fillError = error;
      fillFailed.abort();
    });
    const memoryBytes = spec.resources.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    const cpus = Math.max(1, Math.min(Math.ceil(spec.resources.cpus ?? 1), deps.cpuLimit));
    let vm: Vm | undefined;
    try {
      const initrd = spec.network ? await networkInitrd(deps.guest, spec.network.forwarder) : deps.guest.initrd;
      vm = await Vm.boot(
        {
          guest: { kernel: deps.guest.kernel, initrd },
          network: spec.network,
          accelerator: deps.accelerator.accelerator,
          memoryMiB: Math.ceil(memoryBytes / 1024 ** 2) + GUEST_OVERHEAD_MIB,
          cpus,
          disks: [
            { path: workspaceDisk, readOnly: false, serial: "airlock-work" },
            { path: scratchDisk, readOnly: false, serial: "airlock-scratch" },
            { path: returnDisk, readOnly: false, serial: "airlock-return" },
          ],
          env: {
            PATH: deps.hostPath,
            AIRLOCK_SANDBOX: id,
            AIRLOCK_EXECUTOR_PID: spec.labels[LABEL.executorPid] ?? String(process.pid),
            AIRLOCK_HOST: spec.labels[LABEL.host] ?? "",
            AIRLOCK_JOB: String(spec.jobId),
            AIRLOCK_ATTEMPT: String(spec.attempt),
          },
          extraCmdline: deps.debugBoot ? "airlock.debug" : undefined,
        },
        AbortSignal.any([signal, fillFailed.signal]),
        deps.bootTimeoutMs,
      );
      await filled;
    } catch (caught) {
      await vm?.kill();
      await filled.catch(() => undefined);
      await Promise.all(disks.map((disk) => rm(disk, { force: true })));
      const error = fillError ?? caught;
      if (error instanceof DiskTooSmall) throw new StepFailedError("prepare", undefined, `the workspace does not fit in the job's disk limit of ${formatSize(diskBytes)}`);
      throw error;
    }
    spec.logger.info("microVM booted", { sandbox: id, accelerator: deps.accelerator.accelerator, bootMs: vm.bootMs, cpus, memoryMiB: Math.ceil(memoryBytes / 1024 ** 2) });
    return new MicroVmSandbox(id, vm, spec, deps, disks, returnDisk, started);
  }

  exec(run: StepRun, io: StepIO, signal: AbortSignal): Promise<StepOutcome> {
    const step = this.runStep(run, io, AbortSignal.any([signal, this.destroyed.signal]));
    this.running = step;
    return step;
  }

  private async runStep(run: StepRun, io: StepIO, stop: AbortSignal): Promise<StepOutcome> {
    if (stop.aborted) return { exitCode: null, limit: "killed" };
    if (!this.vm.alive) throw new SandboxError(`the VM is gone${this.vm.channel.broken ? `: ${this.vm.channel.broken.message}` : ""}`);
    const note = (line: string): void => io.write(Buffer.from(`[airlock] ${line}`), "stderr");
    const image = run.step.image ?? this.deps.defaultImage;
    if (!run.step.image) note(`step ${run.step.key} names no image; using the executor's default image ${image}\n`);
    let lun: number;
    let env: string[];
    try {
      // The image disk is found (or built) and hot-plugged while the guest mounts its own disks.
      const attaching = performance.now();
      const attached = this.deps.images.disk(image, note).then(async (disk) => {
        const lun = await this.attach(disk.path, disk.digest);
        this.imageAttachMs.push(performance.now() - attaching);
        return { env: disk.env, lun };
      });
      attached.catch(() => undefined);
      await until(this.disksReady, stop);
      ({ env, lun } = await until(attached, stop));
    } catch (error) {
      if (error instanceof StepAborted) return { exitCode: null, limit: "killed" };
      throw error;
    }
    const fields = [`lun=${lun}`, `dir=${run.step.dir}`, `mem=${this.spec.resources.memoryBytes ?? DEFAULT_MEMORY_BYTES}`, `pids=${this.spec.resources.pids ?? DEFAULT_PIDS_LIMIT}`, "hostname=airlock"];
    if (this.spec.network) fields.push(`net=${GATEWAY}`);
    const variables = new Map<string, string>([
      ["PATH", DEFAULT_PATH],
      ["HOME", "/root"],
      ["HOSTNAME", "airlock"],
    ]);
    for (const pair of env) {
      const equals = pair.indexOf("=");
      if (equals > 0) variables.set(pair.slice(0, equals), pair.slice(equals + 1));
    }
    for (const [name, value] of Object.entries(run.env)) variables.set(name, value);
    if (variables.size > MAX_ENV) return { exitCode: null, message: `the step has ${variables.size} environment variables; at most ${MAX_ENV} fit` };
    for (const [name, value] of variables) fields.push(`env=${name}=${value}`);
    fields.push(`script=${run.script}`);
    if (fields.some((field) => field.includes("\0"))) return { exitCode: null, message: "the step's env, dir or commands contain a NUL byte" };
    const payload = Buffer.from(fields.join("\0"));
    if (payload.byteLength > MAX_FRAME) return { exitCode: null, message: `the step's env and commands take ${formatSize(payload.byteLength)}; at most ${formatSize(MAX_FRAME)} fit` };
    this.stepsRun += 1;
    let result = "";
    let graceTimer: NodeJS.Timeout | undefined;
    const onStop = (): void => {
      this.stepStopped = true;
      this.vm.channel.send("K");
      graceTimer = setTimeout(() => void this.vm.kill(), KILL_GRACE_MS);
    };
    stop.addEventListener("abort", onStop, { once: true });
    try {
      await this.vm.channel.request("R", payload, (frame) => {
        if (frame.type === "O" || frame.type === "E") {
          io.write(frame.payload, frame.type === "O" ? "stdout" : "stderr");
          return false;
        }
        if (frame.type === "X") {
          result = frame.payload.toString("utf8");
          return true;
        }
        throw new SandboxError(`the guest agent sent "${frame.type}" during a step`);
      });
    } catch (error) {
      if (stop.aborted) return { exitCode: null, limit: "killed" };
      throw new SandboxError(`the VM failed during step ${run.step.key}: ${coerceError(error).message}`);
    } finally {
      clearTimeout(graceTimer);
      stop.removeEventListener("abort", onStop);
    }
    return this.outcome(result, stop.aborted);
  }

  private outcome(result: string, stopped: boolean): StepOutcome {
    if (result.startsWith("error=")) return { exitCode: null, message: result.slice("error=".length) };
    const numbers = Object.fromEntries(result.split(" ").map((pair) => pair.split("=") as [string, string]));
    const status = Number(numbers.status ?? 0);
    const oom = Number(numbers.oom ?? 0) > 0;
    const pidsHit = Number(numbers.pids ?? 0) > 0;
    const exited = (status & 0x7f) === 0;
    const exitCode = exited ? (status >> 8) & 0xff : null;
    if (oom) {
      return { exitCode: exitCode ?? null, limit: "memory", message: `ran out of memory and was killed (memory limit ${formatSize(this.spec.resources.memoryBytes ?? DEFAULT_MEMORY_BYTES)})` };
    }
    const pidsMessage = `hit its pids limit of ${this.spec.resources.pids ?? DEFAULT_PIDS_LIMIT} processes, so new processes could not start`;
    if (stopped) return pidsHit ? { exitCode: null, limit: "pids", message: `${pidsMessage}; then it was stopped` } : { exitCode: null, limit: "killed" };
    if (pidsHit && exitCode !== 0) return { exitCode, limit: "pids", message: `${pidsMessage} (exit code ${exitCode ?? "none"})` };
    if (!exited) return { exitCode: null, message: `killed by signal ${status & 0x7f}` };
    return { exitCode };
  }

  private async attach(path: string, digest: string): Promise<number> {
    const known = this.luns.get(digest);
    if (known !== undefined) return known;
    const lun = FIRST_IMAGE_LUN + this.luns.size;
    if (lun > MAX_LUN) throw new SandboxError(`a job may use at most ${MAX_LUN - FIRST_IMAGE_LUN + 1} different images`);
    this.luns.set(digest, lun);
    await this.vm.attachReadOnly(path, lun);
    return lun;
  }

  /** Processes running in the guest besides the agent ("pid command" lines): for tests and test-vm. */
  async processes(): Promise<string[]> {
    await this.disksReady.catch(() => undefined);
    if (!this.vm.alive) return [];
    let text = "";
    await this.vm.channel.request("P", "", (frame) => {
      text = frame.payload.toString("utf8");
      return true;
    });
    return text.split("\n").filter(Boolean);
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    this.destroyed.abort();
    await this.running?.catch(() => undefined);
    try {
      if (this.vm.alive && this.stepsRun > 0 && !this.stepStopped) await this.copyBack();
    } finally {
      await this.vm.kill();
      await Promise.all(this.disks.map((disk) => rm(disk, { force: true })));
      if (this.warmVm) await removeWarmDirs(this.warmVm);
    }
  }

  /** Brings the workspace out of the VM (a tar on the return disk) and swaps it in for the host's copy. */
  private async copyBack(): Promise<void> {
    const started = Date.now();
    const workspace = this.spec.workspace;
    let status = "";
    try {
      await this.vm.channel.request("T", "", (frame) => {
        if (frame.type !== "Z") throw new SandboxError(`the guest agent sent "${frame.type}" while packing the workspace`);
        status = frame.payload.toString("utf8");
        return true;
      });
    } catch (error) {
      throw new SandboxError(`could not bring the workspace back from the VM: ${coerceError(error).message}`, { cause: error });
    }
    const size = Number(/size=(\d+)/.exec(status)?.[1] ?? 0);
    const diskSize = (await stat(this.returnDisk)).size;
    if (!status.startsWith("status=0 ") || size <= 0 || size > diskSize) {
      throw new SandboxError(`the VM could not pack the workspace (${status.replace(/^status=-?\d+ size=\d+ ?/, "").trim() || status || "no answer"})`);
    }
    const fresh = join(dirname(workspace), `.${basename(workspace)}.from-vm-${randomBytes(4).toString("hex")}`);
    await mkdir(fresh, { mode: (await stat(workspace)).mode & 0o777 });
    let skipped = 0;
    try {
      await extractTar(createReadStream(this.returnDisk, { start: 0, end: size - 1, highWaterMark: 1024 * 1024 }), fresh, { onSkip: () => (skipped += 1) });
      const old = `${fresh}.old`;
      await rename(workspace, old);
      await rename(fresh, workspace);
      await rm(old, { recursive: true, force: true });
      this.spec.logger.info("workspace returned from the VM", { ms: Date.now() - started, bytes: size, skipped });
    } catch (error) {
      await rm(fresh, { recursive: true, force: true });
      throw new SandboxError(`could not bring the workspace back from the VM: ${coerceError(error).message}`, { cause: error });
    }
  }
}
