/**
 * The warm pool: up to `size` pre-booted, never-used VMs of one shape (vCPUs, memory, disk size,
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
 * States of a pooled VM: BOOTING -> IDLE -> TAKEN (the pool forgets it) | RECYCLED (older than
 * maxAgeMs, or its QEMU died: killed, removed, replaced). The pool boots one VM at a time
 * (`refill`, a single loop: on a 2-core TCG host parallel boots only slow the running jobs),
 * until idle + booting = size; a failed boot is retried after a backoff (5 s doubling to
 * 60 s). `take` is synchronous (single-threaded JS: no two jobs get one VM). `close` stops the
 * loop, aborts the boot in flight and kills every idle VM; after it `take` returns nothing.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Logger } from "../../common/logger.ts";
import { coerceError } from "../../protocol/index.ts";
import { processAlive } from "../labels.ts";
import type { AcceleratorChoice } from "./accel.ts";
import { createSparse, makeExt4 } from "./disks.ts";
import type { Guest } from "./guest.ts";
import { networkInitrd } from "./net.ts";
import { Vm } from "./vm.ts";

export const POOL_MARKER_PREFIX = "microvm-pool-";
/** Networked warm VMs' gateway links live in a temporary dir <tmp>/airlock-gw-<executor pid>-<random suffix>/. */
const GATEWAY_DIR_PREFIX = "airlock-gw-";

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
}

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
}

export interface PoolStats {
  size: number;
  idle: number;
  booting: number;
  /** Resident memory of the idle VMs' QEMU processes. */
  idleRssBytes: number;
}

export function poolDir(dataDir: string): string {
  return join(dataDir, "microvm", "pool");
}

/** Resident set of a process, from /proc; 0 when it is gone. */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const kib = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return Number(kib ?? 0) * 1024;
  } catch {
    return 0;
  }
}

export class WarmPool {
  private readonly options: PoolOptions;
  private readonly idle: WarmVm[] = [];
  private readonly stop = new AbortController();
  private booting = 0;
  private wake: () => void = () => undefined;
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: PoolOptions) {
    this.options = options;
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
    this.timer = setInterval(() => this.recycleOld(), every);
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
  }

  private recycleOld(): void {
    const now = Date.now();
    for (const warm of [...this.idle]) {
      if (now - warm.bornAt < this.options.maxAgeMs && warm.vm.alive) continue;
      this.idle.splice(this.idle.indexOf(warm), 1);
      void this.discard(warm, warm.vm.alive ? "it reached the maximum age" : "its QEMU is gone");
    }
    this.wake();
  }

  private async discard(warm: WarmVm, why: string): Promise<void> {
    this.options.logger.info("recycling a warm VM", { vm: warm.id, why, ageMs: Date.now() - warm.bornAt });
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
        const warm = await this.bootOne();
        if (this.closed) {
          await this.discard(warm, "the executor is stopping");
        } else {
          this.idle.push(warm);
          warm.vm.process.once("close", () => this.recycleOld());
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

  private async bootOne(): Promise<WarmVm> {
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
      this.options.logger.info("warm VM ready", { vm: id, bootMs: Date.now() - started });
      return { id, vm, shape, dir, disks, bornAt: Date.now(), gatewayLink };
    } catch (error) {
      await removeWarmDirs({ dir, gatewayLink });
      throw error;
    }
  }
}

/** The file in a warm VM's directory naming the job that took it (for operators and tests). */
export const JOB_FILE = "job";

/** The job id a running warm VM's QEMU (pid) serves, read from its directory; undefined while idle. */
export function jobOfWarmVm(pid: number): number | undefined {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const dir = /file\.filename=([^\0]*)\/workspace\.ext4/.exec(cmdline)?.[1]?.replace(/,,/g, ",");
    if (!dir) return undefined;
    const id = Number(/^AIRLOCK_JOB=(\d+)$/m.exec(readFileSync(join(dir, JOB_FILE), "utf8"))?.[1]);
    return Number.isInteger(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** Removes a warm VM's disks and its gateway link's directory. */
export async function removeWarmDirs(warm: Pick<WarmVm, "dir" | "gatewayLink">): Promise<void> {
  await rm(warm.dir, { recursive: true, force: true });
  if (warm.gatewayLink) await rm(dirname(warm.gatewayLink), { recursive: true, force: true });
}

/** Removes pool directories and gateway-link directories whose executor process is gone (their VMs died with it: pdeathsig). */
export async function reapPoolDirs(dataDir: string): Promise<number> {
  let removed = 0;
  for (const [root, prefix] of [[poolDir(dataDir), POOL_MARKER_PREFIX], [tmpdir(), GATEWAY_DIR_PREFIX]] as const) {
    for (const name of await readdir(root).catch(() => [] as string[])) {
      const pid = Number(name.slice(prefix.length).split("-")[0]);
      if (!name.startsWith(prefix) || !Number.isInteger(pid) || pid <= 0 || pid === process.pid || processAlive(pid)) continue;
      await rm(join(root, name), { recursive: true, force: true });
      removed += 1;
    }
  }
  return removed;
}
