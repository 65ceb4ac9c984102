/**
 * The warm pool: up to `size` pre-booted (or restored), never-used VMs of one shape (vCPUs, memory, disk size,
 * no network), each with its agent up and waiting for 'M'. Each has its three boot disks in its own
 * directory under <data>/microvm/pool/: the scratch disk's empty file system is written before
 * the VM is offered; the workspace disk is a blank sparse file of the shape's size, which the
 * job that takes the VM fills (mkfs.ext4 -d, in place, QEMU having it open) before it says 'M'.
 * The agent flushes the block devices' caches before mounting (boot.c), so what the guest
 * read of the blank disks while booting is not what it mounts. A VM is used by one job and
 * destroyed by that job's sandbox: nothing crosses jobs.
 *
 * Pools are keyed by network: the runtime keeps one pool of VMs without a network device and,
 * when the executor gives jobs a network, one of VMs booted with it (net.ts: the forwarder in the
 * initramfs, `airlock.net`, a virtio-net device). A networked VM's guestfwd command is fixed at
 * boot, so it names a path of the VM's own (`gatewayLink`, in a short private directory: unix
 * socket paths are short) where nothing listens; the job that takes it makes that path a symlink
 * to its own gateway's socket. Until then a connection from the guest finds no gateway. A job
 * without a network never gets a VM with a device: with one it could make QEMU start host
 * processes (the forwarder, per connection) that it must not have.
 *
 * States of a pooled VM: BOOTING (or RESTORING) -> IDLE -> TAKEN (the pool forgets it) | RECYCLED (older than
 * maxAgeMs, or its QEMU died: killed, removed, replaced). The pool boots one VM at a time
 * (`refill`, a single loop: on a 2-core TCG host parallel boots only slow the running jobs),
 * until idle + booting = size; a failed boot is retried after a backoff (5 s doubling to
 * 60 s). `take` is synchronous (single-threaded JS: no two jobs get one VM). `close` stops the
 * loop, aborts the boot in flight and kills every idle VM; after it `take` returns nothing.
 *
 * Refill: by restoring a snapshot (`refill: "restore"`, the default: under TCG 0.1-0.2 s against
 * 1.8-3 s for a boot) or by booting. The pool's first refill boots a template VM, waits until its
 * agent is done booting, saves it to <pool dir>/microvm-pool-<pid>-snapshot-<id>/guest.state
 * (a QEMU migration stream) and kills it; each refill then starts QEMU from that file with its
 * own disks and sockets, and the agent takes a fresh clock and 64 bytes of host entropy before the
 * VM counts as idle (vm.ts). The snapshot is made again once older than maxAgeMs. A restore that
 * fails turns the pool to booting, for good (logged). Snapshot states: NONE -> MAKING (inside the
 * refill loop, so never two at once) -> READY -> (stale) MAKING again.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock, type Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { coerceError } from "../../protocol/index.ts";
import type { AcceleratorChoice } from "./accel.ts";
import { createSparse, makeExt4 } from "./disks.ts";
import type { Guest } from "./guest.ts";
import { networkInitrd } from "./net.ts";
import { GATEWAY_DIR_PREFIX, POOL_MARKER_PREFIX, poolDir, removeWarmDirs, rssBytes } from "./pool-dirs.ts";
import { Vm } from "./vm.ts";

export { JOB_FILE, jobOfWarmVm, POOL_MARKER_PREFIX, poolDir, reapPoolDirs, removeWarmDirs, rssBytes } from "./pool-dirs.ts";

/** What a VM is booted with, and so which jobs it can serve. */
export interface VmShape {
  cpus: number;
  memoryMiB: number;
  diskBytes: number;
}

export interface WarmVm {
  id: string;
  vm: Vm;
  shape: VmShape;
  /** The VM's own directory: workspace.ext4 (blank), scratch.ext4 (empty ext4), return.tar. */
  dir: string;
  disks: [workspace: string, scratch: string, ret: string];
  bornAt: number;
  /** Networked VMs: where the guestfwd command connects; the taking job links it to its gateway. */
  gatewayLink?: string | undefined;
  /** Restored from the pool's snapshot, not booted. */
  restored: boolean;
}

/** How the pool makes its VMs: restoring a snapshot of a booted guest, or booting each. */
export type RefillMode = "restore" | "boot";

export interface PoolOptions {
  size: number;
  maxAgeMs: number;
  shape: VmShape;
  dataDir: string;
  hostPath: string;
  bootTimeoutMs: number;
  logger: Logger;
  /** The guest and accelerator, resolved when the first VM boots. */
  platform: () => Promise<{ guest: Guest; accelerator: AcceleratorChoice }>;
  debugBoot?: boolean | undefined;
  /** Boot the VMs with a network device, its forwarder this static binary. */
  forwarder?: string | undefined;
  /** Default "restore". */
  refill?: RefillMode | undefined;
  /** For the ages of VMs and of the snapshot. */
  clock?: Clock | undefined;
}

export interface PoolStats {
  size: number;
  idle: number;
  booting: number;
  /** Resident memory of the idle VMs' QEMU processes. */
  idleRssBytes: number;
  /** How refills are made now ("boot" after a failed restore). */
  refill: RefillMode;
}


export class WarmPool {
  private readonly options: PoolOptions;
  private readonly idle: WarmVm[] = [];
  private readonly stop = new AbortController();
  private booting = 0;
  private wake: () => void = () => undefined;
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refillMode: RefillMode;
  private snapshot: { dir: string; file: string; madeAt: number } | undefined;
  private readonly clock: Clock;

  constructor(options: PoolOptions) {
    this.options = options;
    this.refillMode = options.refill ?? "restore";
    this.clock = options.clock ?? systemClock;
  }

  /** The forwarder its networked VMs were booted with. */
  get forwarder(): string | undefined {
    return this.options.forwarder;
  }

  get closed(): boolean {
    return this.stop.signal.aborted;
  }

  /** Starts filling the pool in the background (idempotent). */
  start(): void {
    if (this.loop || this.closed || this.options.size <= 0) return;
    this.loop = this.refill();
    const every = Math.max(1000, Math.min(60_000, Math.floor(this.options.maxAgeMs / 4)));
    this.timer = setInterval(() => this.recycle(), every);
    this.timer.unref();
  }

  /** An idle VM that can serve a job of `needs`, now, or undefined (the job boots its own). */
  take(needs: VmShape): WarmVm | undefined {
    if (this.closed) return undefined;
    const shape = this.options.shape;
    // The guest's cgroup enforces the job's memory limit, so a VM with more memory serves it.
    if (needs.cpus !== shape.cpus || needs.diskBytes !== shape.diskBytes || needs.memoryMiB > shape.memoryMiB) return undefined;
    while (this.idle.length > 0) {
      const warm = this.idle.shift();
      if (!warm) break;
      if (warm.vm.alive) {
        this.wake();
        return warm;
      }
      void this.discard(warm, "its QEMU is gone");
    }
    this.wake();
    return undefined;
  }

  stats(): PoolStats {
    return {
      size: this.options.size,
      idle: this.idle.length,
      booting: this.booting,
      idleRssBytes: this.idle.reduce((sum, warm) => sum + rssBytes(warm.vm.pid), 0),
      refill: this.refillMode,
    };
  }

  /** Resolves once the pool holds `size` idle VMs (for tests and the benchmark). */
  async filled(signal: AbortSignal): Promise<void> {
    while (this.idle.length < this.options.size) {
      if (signal.aborted || this.closed) throw new Error("the warm pool did not fill");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async close(): Promise<void> {
    this.stop.abort();
    if (this.timer) clearInterval(this.timer);
    this.wake();
    await this.loop;
    await Promise.all(this.idle.splice(0).map((warm) => this.discard(warm, "the executor is stopping")));
    await this.dropSnapshot();
  }

  /** Kills idle VMs older than the maximum age, or whose QEMU died (a timer calls it; so may tests). */
  recycle(): void {
    const now = this.clock.now();
    for (const warm of [...this.idle]) {
      if (now - warm.bornAt < this.options.maxAgeMs && warm.vm.alive) continue;
      this.idle.splice(this.idle.indexOf(warm), 1);
      void this.discard(warm, warm.vm.alive ? "it reached the maximum age" : "its QEMU is gone");
    }
    this.wake();
  }

  private async discard(warm: WarmVm, why: string): Promise<void> {
    this.options.logger.info("recycling a warm VM", { vm: warm.id, why, ageMs: this.clock.now() - warm.bornAt });
    await warm.vm.kill();
    await removeWarmDirs(warm);
  }

  private async refill(): Promise<void> {
    let backoff = 5000;
    while (!this.closed) {
      if (this.idle.length + this.booting >= this.options.size) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      this.booting += 1;
      try {
        const warm = await this.makeOne();
        if (this.closed) {
          await this.discard(warm, "the executor is stopping");
        } else {
          this.idle.push(warm);
          warm.vm.process.once("close", () => this.recycle());
          backoff = 5000;
        }
      } catch (error) {
        if (this.closed) break;
        this.options.logger.warn("could not boot a warm VM; retrying", { error: coerceError(error).message, retryMs: backoff });
        await new Promise((resolve) => setTimeout(resolve, backoff).unref());
        backoff = Math.min(backoff * 2, 60_000);
      } finally {
        this.booting -= 1;
      }
    }
  }

  /** A VM restored from the snapshot (made first when there is none or it is stale), or booted. */
  private async makeOne(): Promise<WarmVm> {
    if (this.refillMode === "restore") {
      try {
        return await this.bootOne(await this.currentSnapshot());
      } catch (error) {
        if (this.closed) throw error;
        this.refillMode = "boot";
        await this.dropSnapshot();
        this.options.logger.warn("could not restore a warm VM from a snapshot; booting them from now on", { error: coerceError(error).message });
      }
    }
    return this.bootOne(undefined);
  }

  private async currentSnapshot(): Promise<string> {
    if (this.snapshot && this.clock.now() - this.snapshot.madeAt < this.options.maxAgeMs) return this.snapshot.file;
    await this.dropSnapshot();
    const started = Date.now();
    const template = await this.bootOne(undefined);
    const dir = join(poolDir(this.options.dataDir), `${POOL_MARKER_PREFIX}${process.pid}-snapshot-${randomBytes(4).toString("hex")}`);
    const file = join(dir, "guest.state");
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await template.vm.save(file);
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      throw error;
    } finally {
      await template.vm.kill();
      await removeWarmDirs(template);
    }
    this.snapshot = { dir, file, madeAt: this.clock.now() };
    this.options.logger.info("warm VM snapshot saved", { file, ms: Date.now() - started });
    return file;
  }

  private async dropSnapshot(): Promise<void> {
    const old = this.snapshot;
    this.snapshot = undefined;
    if (old) await rm(old.dir, { recursive: true, force: true });
  }

  /** Boots a VM, or restores it from `snapshot`: the same command line, its own disks and sockets. */
  private async bootOne(snapshot: string | undefined): Promise<WarmVm> {
    const { guest, accelerator } = await this.options.platform();
    const { shape } = this.options;
    const id = `${POOL_MARKER_PREFIX}${process.pid}-${randomBytes(4).toString("hex")}-${accelerator.accelerator}`;
    const dir = join(poolDir(this.options.dataDir), id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const disks: WarmVm["disks"] = [join(dir, "workspace.ext4"), join(dir, "scratch.ext4"), join(dir, "return.tar")];
    const forwarder = this.options.forwarder;
    const gatewayLink = forwarder ? join(await mkdtemp(join(tmpdir(), `${GATEWAY_DIR_PREFIX}${process.pid}-`)), "gw.sock") : undefined;
    try {
      const initrd = forwarder ? await networkInitrd(guest, forwarder) : guest.initrd;
      await Promise.all(disks.map((disk) => createSparse(disk, shape.diskBytes)));
      const scratch = makeExt4({ path: disks[1], sizeBytes: shape.diskBytes, label: "scratch", hostPath: this.options.hostPath });
      scratch.catch(() => undefined);
      const started = Date.now();
      const vm = await Vm.boot(
        {
          guest: { kernel: guest.kernel, initrd },
          network: forwarder && gatewayLink ? { forwarder, gatewaySocket: gatewayLink } : undefined,
          accelerator: accelerator.accelerator,
          memoryMiB: shape.memoryMiB,
          cpus: shape.cpus,
          disks: [
            { path: disks[0], readOnly: false, serial: "airlock-work" },
            { path: disks[1], readOnly: false, serial: "airlock-scratch" },
            { path: disks[2], readOnly: false, serial: "airlock-return" },
          ],
          env: { PATH: this.options.hostPath, AIRLOCK_SANDBOX: id, AIRLOCK_EXECUTOR_PID: String(process.pid), AIRLOCK_HOST: hostname() },
          extraCmdline: this.options.debugBoot ? "airlock.debug" : undefined,
          snapshot,
        },
        this.stop.signal,
        this.options.bootTimeoutMs,
      );
      try {
        await scratch;
      } catch (error) {
        await vm.kill();
        throw error;
      }
      this.options.logger.info(snapshot ? "warm VM restored" : "warm VM ready", { vm: id, bootMs: Date.now() - started });
      return { id, vm, shape, dir, disks, bornAt: this.clock.now(), gatewayLink, restored: snapshot !== undefined };
    } catch (error) {
      await removeWarmDirs({ dir, gatewayLink });
      throw error;
    }
  }
}
