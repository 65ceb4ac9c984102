/**
 * Where warm VMs live on the host: their directories under <data>/microvm/pool/ (disks, the job
 * file, the pool's snapshot) and their gateway links' directories under the temp dir, both named
 * with the executor's pid so that the next executor can remove a dead one's; and what a pooled
 * QEMU process costs (its resident set, from /proc).
 */
import { readFileSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { processAlive } from "../labels.ts";

export const POOL_MARKER_PREFIX = "microvm-pool-";
/** Networked warm VMs' gateway links live in a temporary dir <tmp>/airlock-gw-<executor pid>-<random suffix>/. */
export const GATEWAY_DIR_PREFIX = "airlock-gw-";

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
export async function removeWarmDirs(warm: { dir: string; gatewayLink?: string | undefined }): Promise<void> {
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
