/**
 * Labels stamped on everything a sandbox creates (containers, cgroups, processes, VMs), so that
 * an executor starting on a host can find and remove what a dead executor left behind.
 */
import { hostname } from "node:os";

export const LABEL = {
  executor: "io.airlock.executor",
  executorPid: "io.airlock.executor-pid",
  host: "io.airlock.host",
  job: "io.airlock.job",
  attempt: "io.airlock.attempt",
} as const;

export function sandboxLabels(executorName: string, jobId: number, attempt: number): Record<string, string> {
  return {
    [LABEL.executor]: executorName,
    [LABEL.executorPid]: String(process.pid),
    [LABEL.host]: hostname(),
    [LABEL.job]: String(jobId),
    [LABEL.attempt]: String(attempt),
  };
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when the labels name an executor of this host whose process is gone. */
export function isLeftover(labels: Readonly<Record<string, string | undefined>>): boolean {
  if (labels[LABEL.host] !== hostname()) return false;
  const pid = Number(labels[LABEL.executorPid]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  return pid !== process.pid && !processAlive(pid);
}
