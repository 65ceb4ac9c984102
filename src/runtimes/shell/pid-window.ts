/**
 * Which pids can belong to a sandbox, so that finding its escaped processes need not read the
 * environment of every process on the host (≈ 500 here, three system calls each, per job).
 *
 * Every process of a sandbox is forked after the sandbox was made, so its pid was allocated
 * after the kernel's pid cursor (the last pid, `/proc/loadavg`'s last field) stood at `lastPid`.
 * The kernel hands out pids cyclically: until the cursor wraps past `pid_max`, every pid
 * allocated since is above `lastPid`. A wrap needs the cursor to move `pid_max - lastPid`; it
 * moves one per allocation plus one per in-use pid it skips, and in one pass it can only skip
 * pids that were in use when the window opened (at most the threads alive then; anything
 * allocated since is behind it). Allocations are bounded by the host's fork count (`/proc/stat`
 * `processes`, which counts threads and other pid namespaces too: an over-estimate, which is the
 * safe side). So while `forks + threads < pid_max - lastPid`, no wrap happened and the pids above
 * `lastPid` are the only candidates; otherwise, or when anything cannot be read, all are.
 *
 * The cursor is per pid namespace and so is `/proc/loadavg`; the executor's /proc is its own
 * namespace's, like the pids it lists.
 */
import { readFileSync } from "node:fs";

export interface PidWindow {
  lastPid: number;
  forks: number;
  threads: number;
}

export interface PidCounters extends PidWindow {
  pidMax: number;
}

let pidMax: number | undefined;

function readCounters(): PidCounters | undefined {
  try {
    // "0.50 0.40 0.30 2/233 4472": running/threads, last pid.
    const load = /(\d+)\/(\d+)\s+(\d+)\s*$/.exec(readFileSync("/proc/loadavg", "latin1"));
    const forks = /^processes\s+(\d+)$/m.exec(readFileSync("/proc/stat", "latin1"));
    pidMax ??= Number(readFileSync("/proc/sys/kernel/pid_max", "latin1").trim());
    if (!load || !forks || !Number.isSafeInteger(pidMax) || pidMax <= 0) return undefined;
    return { threads: Number(load[2]), lastPid: Number(load[3]), forks: Number(forks[1]), pidMax };
  } catch {
    return undefined;
  }
}

/** Opens a window now (undefined when /proc does not tell: then every pid is a candidate). */
export function openPidWindow(): PidWindow | undefined {
  const counters = readCounters();
  return counters && { lastPid: counters.lastPid, forks: counters.forks, threads: counters.threads };
}

/**
 * The lowest pid a process forked since `window` opened can have, given the counters read after
 * the pids were listed; 0 (every pid) when the cursor may have wrapped.
 */
export function lowestPidSince(window: PidWindow | undefined, now: PidCounters | undefined): number {
  if (!window || !now) return 0;
  if (now.lastPid < window.lastPid) return 0;
  if (now.forks - window.forks + window.threads >= now.pidMax - window.lastPid) return 0;
  return window.lastPid + 1;
}

/** `lowestPidSince` with the counters as they are now (read after listing /proc). */
export function lowestPidNow(window: PidWindow | undefined): number {
  return window ? lowestPidSince(window, readCounters()) : 0;
}
