/**
 * Tells whether a running container hit its pids limit. The Engine does not report it, but the
 * container's pids cgroup counts refused forks in `pids.events` ("max N"). That cgroup is removed
 * as soon as the container stops, before the attach stream or the wait call ends, so the file is
 * opened right after start and read every few milliseconds while the step runs. (Under gVisor a
 * sandbox that hits the limit dies within ~40 ms; a 10 ms period catches it.)
 *
 * Where the executor cannot see the host's cgroup tree (it runs in a container of its own, or on
 * another host than dockerd), `hit` stays false: the step still ends, only without the reason.
 */
import { closeSync, openSync, readSync } from "node:fs";

const PERIOD_MS = 10;

/** Where dockerd puts a container's pids cgroup, for the cgroupfs and systemd drivers, v1 and v2. */
function candidates(id: string): string[] {
  return [
    `/sys/fs/cgroup/pids/docker/${id}/pids.events`,
    `/sys/fs/cgroup/pids/system.slice/docker-${id}.scope/pids.events`,
    `/sys/fs/cgroup/docker/${id}/pids.events`,
    `/sys/fs/cgroup/system.slice/docker-${id}.scope/pids.events`,
  ];
}

export class PidsWatch {
  private fd: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly buffer = Buffer.alloc(256);
  /** True once a fork was refused because of the limit. */
  hit = false;

  /** Starts watching a container that was just started; a no-op where its cgroup is not visible. */
  static start(containerId: string): PidsWatch {
    const watch = new PidsWatch();
    for (const path of candidates(containerId)) {
      try {
        watch.fd = openSync(path, "r");
        break;
      } catch {
        // not this layout
      }
    }
    if (watch.fd !== undefined) {
      watch.read();
      watch.timer = setInterval(() => watch.read(), PERIOD_MS);
      watch.timer.unref();
    }
    return watch;
  }

  /** Reads the counter once more (the cgroup may still be there) and stops. */
  stop(): boolean {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.read();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    return this.hit;
  }

  private read(): void {
    if (this.fd === undefined || this.hit) return;
    try {
      const length = readSync(this.fd, this.buffer, 0, this.buffer.length, 0);
      const match = /max (\d+)/.exec(this.buffer.toString("latin1", 0, length));
      if (match && Number(match[1]) > 0) this.hit = true;
    } catch {
      // The cgroup is gone (ENODEV): the container stopped; what was seen stands.
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
