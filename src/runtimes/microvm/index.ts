/**
 * The microvm runtime (isolation `vm`): every job in a fresh QEMU `microvm` virtual machine,
 * booted before its first step and killed after its last, with KVM when a probe VM boots with
 * it and TCG otherwise. The VM sees only its own disks; a job with a network also gets one network
 * device whose only way out is the job's egress gateway (net.ts). With `warmVms` > 0, a job
 * without a network whose shape matches takes a pre-booted, never-used VM from the warm pool
 * (pool.ts) instead of booting one; `start` fills the pool, `close` empties it. See sandbox.ts for
 * a job's life, agent/agent.c for the guest, guest.ts for how the guest is built.
 */
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { coerceError, type Isolation, type WarmPoolReport } from "../../protocol/index.ts";
import { isLeftover, LABEL } from "../labels.ts";
import type { ProbeResult, Runtime, RuntimeStart, Sandbox, SandboxSpec } from "../runtime.ts";
import { findMarked } from "../shell/process-tree.ts";
import { chooseAccelerator } from "./accel.ts";
import { MKFS } from "./disks.ts";
import { loadGuest } from "./guest.ts";
import { ImageDisks } from "./image-disks.ts";
import { POOL_MARKER_PREFIX, reapPoolDirs, rssBytes, WarmPool, type PoolStats, type RefillMode } from "./pool.ts";
import { DEFAULT_DISK_BYTES, DEFAULT_MEMORY_BYTES, GUEST_OVERHEAD_MIB, MicroVmSandbox, type MicroVmDeps } from "./sandbox.ts";
import { QEMU } from "./vm.ts";

export interface MicroVmRuntimeOptions {
  dataDir: string;
  /** PATH to find qemu-system-x86_64 and mkfs.ext4 in. */
  path: string;
  /** OCI layouts, archives, or directories holding them. */
  images: readonly string[];
  /** Docker Engine socket path, for images only in Docker. */
  dockerSocket?: string | undefined;
  defaultImage: string;
  logger: Logger;
  /** How long a VM may take to boot (TCG on a busy host is slow). */
  bootTimeoutMs?: number | undefined;
  /** Guests print their boot stages on their console (airlock.debug): for the benchmark. */
  debugBoot?: boolean | undefined;
  /** Pre-booted VMs kept waiting for jobs (0: every job boots its own). */
  warmVms?: number | undefined;
  /** Idle warm VMs older than this are killed and replaced. */
  warmVmMaxAgeMs?: number | undefined;
  /** How warm VMs are made: restored from a snapshot of a booted guest (default), or booted. */
  warmVmRefill?: RefillMode | undefined;
  /** The warm pools' clock (VM and snapshot ages). */
  clock?: Clock | undefined;
}

export const DEFAULT_WARM_VM_MAX_AGE_MS = 30 * 60_000;
/** The warm pool's VMs: the default job shape (1 vCPU, the default memory plus the guest's overhead). */
export const WARM_VM_MEMORY_MIB = Math.ceil(DEFAULT_MEMORY_BYTES / 1024 ** 2) + GUEST_OVERHEAD_MIB;

/** Warm-pool VMs of live executors on this host: their count and resident memory (`executor validate`). */
export function warmVmsOnHost(): { count: number; rssBytes: number } {
  const pids = vmProcesses((marker) => marker.startsWith(POOL_MARKER_PREFIX));
  return { count: pids.length, rssBytes: pids.reduce((sum, pid) => sum + rssBytes(pid), 0) };
}

const MARKER_PREFIX = "microvm-";

function labelsFromEnviron(environ: string): Record<string, string> {
  const names: Record<string, string> = { AIRLOCK_EXECUTOR_PID: LABEL.executorPid, AIRLOCK_HOST: LABEL.host };
  const labels: Record<string, string> = {};
  for (const pair of environ.split("\0")) {
    const equals = pair.indexOf("=");
    const label = names[pair.slice(0, equals)];
    if (label) labels[label] = pair.slice(equals + 1);
  }
  return labels;
}

/** Pids of QEMU processes of microVM sandboxes (all, or those `matches` accepts). */
export function vmProcesses(matches: (marker: string, environ: string) => boolean = () => true): number[] {
  return findMarked((marker, environ) => marker.startsWith(MARKER_PREFIX) && matches(marker, environ));
}

export class MicroVmRuntime implements Runtime {
  readonly name = "microvm";
  readonly isolation: Isolation = "vm";
  readonly enforcesDiskLimit = true;
  readonly readsWorkspaceAtCreate = true;
  private readonly options: MicroVmRuntimeOptions;
  private readonly images: ImageDisks;
  /** Warm VMs without a network device; `netPool`: with one, for jobs with a network (made at `start`). */
  readonly pool: WarmPool | undefined;
  netPool: WarmPool | undefined;

  constructor(options: MicroVmRuntimeOptions) {
    this.options = options;
    this.images = new ImageDisks({ dataDir: options.dataDir, sources: options.images, dockerSocket: options.dockerSocket, hostPath: options.path, logger: options.logger });
    this.pool = this.makePool(undefined);
  }

  private makePool(forwarder: string | undefined): WarmPool | undefined {
    const size = this.options.warmVms ?? 0;
    if (size <= 0) return undefined;
    return new WarmPool({
      size,
      maxAgeMs: this.options.warmVmMaxAgeMs ?? DEFAULT_WARM_VM_MAX_AGE_MS,
      shape: { cpus: 1, memoryMiB: WARM_VM_MEMORY_MIB, diskBytes: DEFAULT_DISK_BYTES },
      dataDir: this.options.dataDir,
      hostPath: this.options.path,
      bootTimeoutMs: this.bootTimeoutMs,
      logger: this.options.logger.child({ pool: forwarder ? "warm-vms-net" : "warm-vms" }),
      platform: () => this.platform(),
      debugBoot: this.options.debugBoot,
      forwarder,
      refill: this.options.warmVmRefill,
      clock: this.options.clock,
    });
  }

  private get bootTimeoutMs(): number {
    return this.options.bootTimeoutMs ?? 180_000;
  }

  private async platform(): Promise<{ guest: Awaited<ReturnType<typeof loadGuest>>; accelerator: MicroVmDeps["accelerator"] }> {
    const guest = await loadGuest(this.options.dataDir);
    return { guest, accelerator: await chooseAccelerator(this.options.dataDir, guest, this.options.logger) };
  }

  /** Starts filling the warm pools (when --warm-vms > 0): with `forwarder`, also one of networked VMs. */
  async start(host: RuntimeStart = {}): Promise<void> {
    if (host.forwarder && !this.netPool) this.netPool = this.makePool(host.forwarder);
    this.pool?.start();
    this.netPool?.start();
  }

  /** Kills the warm pools' VMs. */
  async close(): Promise<void> {
    await Promise.all([this.pool?.close(), this.netPool?.close()]);
  }

  warmPool(): WarmPoolReport | undefined {
    return this.poolStats();
  }

  /** The two pools' counts summed (undefined without a pool). */
  poolStats(): PoolStats | undefined {
    const all = [this.pool?.stats(), this.netPool?.stats()].filter((stats) => stats !== undefined);
    if (all.length === 0) return undefined;
    return all.reduce((sum, stats) => ({
      size: sum.size + stats.size,
      idle: sum.idle + stats.idle,
      booting: sum.booting + stats.booting,
      idleRssBytes: sum.idleRssBytes + stats.idleRssBytes,
      refill: sum.refill === stats.refill ? sum.refill : "boot",
    }));
  }

  private missingTools(): string[] {
    return [QEMU, MKFS].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`], { env: { PATH: this.options.path } }).status !== 0);
  }

  async probe(): Promise<ProbeResult> {
    const missing = this.missingTools();
    if (missing.length > 0) return { usable: false, detail: `${missing.join(" and ")} not found on PATH (apt-get install qemu-system-x86 e2fsprogs)` };
    try {
      const guest = await loadGuest(this.options.dataDir);
      const accelerator = await chooseAccelerator(this.options.dataDir, guest, this.options.logger);
      return { usable: true, detail: `QEMU microvm with ${accelerator.detail}; guest kernel ${guest.kernelVersion} (${guest.bootFormat})` };
    } catch (error) {
      return { usable: false, detail: coerceError(error).message };
    }
  }

  async createSandbox(spec: SandboxSpec, signal: AbortSignal): Promise<Sandbox> {
    const { guest, accelerator } = await this.platform();
    const deps: MicroVmDeps = {
      guest,
      accelerator,
      images: this.images,
      defaultImage: this.options.defaultImage,
      hostPath: this.options.path,
      cpuLimit: availableParallelism(),
      bootTimeoutMs: this.bootTimeoutMs,
      debugBoot: this.options.debugBoot,
    };
    // A networked VM only for a job with a network, with the forwarder it was booted with.
    const pool = spec.network ? (spec.network.forwarder === this.netPool?.forwarder ? this.netPool : undefined) : this.pool;
    const warm = pool?.take(MicroVmSandbox.shapeFor(spec, deps));
    if (warm) return MicroVmSandbox.adopt(spec, deps, warm);
    if (pool) spec.logger.info("no warm VM fits or is ready: booting one", { pool: pool.stats() });
    return MicroVmSandbox.create(spec, deps, signal);
  }

  /** Kills the VMs that executors of this host left running when they died, and removes their half-unpacked images. */
  async reapLeftovers(): Promise<number> {
    const pids = vmProcesses((_marker, environ) => isLeftover(labelsFromEnviron(environ)));
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
        this.options.logger.info("killed a leftover VM", { pid });
      } catch {
        // already gone
      }
    }
    return pids.length + (await this.images.reapTemporary()) + (await reapPoolDirs(this.options.dataDir));
  }
}
