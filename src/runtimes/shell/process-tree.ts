/**
 * Finding and killing every process a shell step started. Steps run in their own session and
 * process group, and carry a marker variable in their environment; a process that leaves the
 * group (setsid, daemonizing) still carries the marker, so scanning /proc for it finds it too.
 */
import { readdirSync, readFileSync } from "node:fs";
import { lowestPidNow, type PidWindow } from "./pid-window.ts";

export const MARKER_VARIABLE = "AIRLOCK_SANDBOX";

function environOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1");
  } catch {
    return undefined;
  }
}

/**
 * Pids whose environment holds `AIRLOCK_SANDBOX=<marker>` (or any marker, when `matches` says so).
 * With `since`, only processes that can have been forked after that window opened are read.
 */
export function findMarked(matches: (marker: string, environ: string) => boolean, since?: PidWindow): number[] {
  const found: number[] = [];
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return found;
  }
  // Read after the listing: every pid listed was allocated before the counters were read.
  const lowest = lowestPidNow(since);
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid || pid < lowest) continue;
    const environ = environOf(pid);
    if (!environ) continue;
    const needle = `${MARKER_VARIABLE}=`;
    let start: number;
    if (environ.startsWith(needle)) {
      start = needle.length;
    } else {
      const at = environ.indexOf(`\0${needle}`);
      if (at < 0) continue;
      start = at + 1 + needle.length;
    }
    const end = environ.indexOf("\0", start);
    const marker = environ.slice(start, end < 0 ? undefined : end);
    if (matches(marker, environ)) found.push(pid);
  }
  return found;
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs a process group (cheap: no /proc scan). */
export function killGroup(processGroup: number | undefined): void {
  if (processGroup !== undefined) signal(-processGroup, "SIGKILL");
}

/** SIGKILLs the process group and every marked process, repeating while new ones appear. */
export function killTree(processGroup: number | undefined, marker: string, since?: PidWindow): number {
  let killed = 0;
  for (let round = 0; round < 10; round += 1) {
    let found = 0;
    if (processGroup !== undefined && signal(-processGroup, "SIGKILL")) found += 1;
    for (const pid of findMarked((candidate) => candidate === marker, since)) {
      if (signal(pid, "SIGKILL")) found += 1;
    }
    killed += found;
    if (found === 0) break;
  }
  return killed;
}
