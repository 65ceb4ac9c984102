/**
 * The workspace disk limit, for runtimes whose sandboxes write the host's file system directly
 * (shell, bwrap, docker, gvisor): the workspace's usage is measured with `du` while a step runs,
 * and the step is stopped once it passes `resources.disk`. Each measurement's cost sets the pace
 * (at least a second apart, at most 10% of the time spent measuring), so huge workspaces are not
 * walked continuously. A step can overshoot by what it writes between two measurements.
 */
import { run } from "../common/exec.ts";

export interface DiskWatch {
  stop(): void;
}

export async function diskUsage(dir: string, hostPath: string): Promise<number | undefined> {
  const result = await run("du", ["-s", "-x", "-B1", dir], { env: { PATH: hostPath, LANG: "C" } });
  const bytes = Number(result.stdout.toString().split(/\s/)[0]);
  return Number.isFinite(bytes) ? bytes : undefined;
}

export function watchDiskUsage(dir: string, limitBytes: number, hostPath: string, onExceeded: (bytes: number) => void): DiskWatch {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const measure = async (): Promise<void> => {
    if (stopped) return;
    const started = Date.now();
    const bytes = await diskUsage(dir, hostPath).catch(() => undefined);
    if (stopped) return;
    if (bytes !== undefined && bytes > limitBytes) {
      stopped = true;
      onExceeded(bytes);
      return;
    }
    timer = setTimeout(() => void measure(), Math.max(1000, (Date.now() - started) * 10));
  };
  timer = setTimeout(() => void measure(), 200);
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
