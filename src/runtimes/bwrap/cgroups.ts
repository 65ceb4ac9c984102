/**
 * Cgroups for bwrap sandboxes: one group per job, which each step's processes join before they
 * run anything, carrying the job's CPU, memory and pids limits. Its counters tell which limit
 * ended a step; killing everything in it ends every process a step started.
 *
 * Where groups live: v1, under this executor's own cgroup in each controller's hierarchy
 * (`<own>/airlock/<group>`); v2, under `<root>/airlock` when we may write the root (root user),
 * else under our own delegated cgroup (systemd `Delegate=yes`), after moving this process into
 * a leaf `<own>/executor` (v2 lets a cgroup with processes in it hand no controllers down).
 * Group names carry job, attempt and executor pid (see groupName), so an executor starting later
 * finds and removes the groups of a dead one.
 *
 * Killing: v2 writes cgroup.kill; v1 freezes the group (nothing can fork), SIGKILLs every member,
 * thaws, and waits until the group is empty. A group is removed (rmdir) only once empty.
 *
 * The per-step calls (counters, members) use synchronous file calls on purpose: they are kernel
 * operations of microseconds on cgroupfs, cheaper than a hop through libuv's thread pool. `add`
 * is not: moving a process waits for an RCU grace period, which is why it happens once per job
 * (see launcher.ts).
 */
import { readFileSync } from "node:fs";
import { access, mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SandboxError } from "../../protocol/index.ts";
import type { CgroupLayout } from "./cgroup-detect.ts";

export interface CgroupLimits {
  cpus?: number | undefined;
  memoryBytes?: number | undefined;
  pids?: number | undefined;
}

export interface CgroupCounters {
  /** Processes the OOM killer ended at the memory limit. */
  oomKills: number;
  /** Forks refused at the pids limit. */
  pidsRefused: number;
}

const PARENT = "airlock";
const CPU_PERIOD_US = 100_000;
const NAME = /^job-(\d+)-(\d+)\.pid-(\d+)\.[\w.-]*$/;

export function groupName(jobId: number, attempt: number, executorPid: number, executorName: string): string {
  return `job-${jobId}-${attempt}.pid-${executorPid}.${executorName.replace(/[^\w.-]/g, "_").slice(0, 100)}`;
}

/** The executor pid a group name carries, or undefined for a name that is not ours. */
export function groupExecutorPid(name: string): number | undefined {
  const match = NAME.exec(name);
  return match ? Number(match[3]) : undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

function readCounter(file: string, key: string): number {
  const text = readOr(file, "");
  const match = new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export class Cgroups {
  readonly version: 1 | 2;
  /** Controller -> the directory holding our groups. */
  private readonly parents: Map<string, string>;

  private constructor(version: 1 | 2, parents: Map<string, string>) {
    this.version = version;
    this.parents = parents;
  }

  /** Makes the parent directories (and, on v2, hands the controllers down to them). */
  static async prepare(layout: CgroupLayout): Promise<Cgroups> {
    const parents = new Map<string, string>();
    if (layout.version === 1) {
      for (const [controller, own] of layout.ownDirs) parents.set(controller, join(own, PARENT));
      for (const dir of new Set(parents.values())) await mkdir(dir, { recursive: true });
      return new Cgroups(1, parents);
    }
    const controllers = [...layout.ownDirs.keys()];
    const parent = await prepareV2Parent(layout, controllers);
    for (const controller of controllers) parents.set(controller, parent);
    return new Cgroups(2, parents);
  }

  get controllers(): string[] {
    return [...this.parents.keys()];
  }

  describe(): string {
    return `cgroup v${this.version} (${this.controllers.join(", ")}) under ${[...new Set(this.parents.values())].join(", ")}`;
  }

  private dirs(name: string): string[] {
    return [...new Set([...this.parents.values()].map((parent) => join(parent, name)))];
  }

  private dir(controller: string, name: string): string {
    const parent = this.parents.get(controller);
    if (!parent) throw new SandboxError(`the ${controller} cgroup controller is not available here`);
    return join(parent, name);
  }

  /** Names of the groups under our parents (any executor's). */
  async list(): Promise<string[]> {
    const names = new Set<string>();
    for (const parent of new Set(this.parents.values())) {
      for (const entry of await readdir(parent, { withFileTypes: true }).catch(() => [])) if (entry.isDirectory() && NAME.test(entry.name)) names.add(entry.name);
    }
    return [...names];
  }

  async create(name: string, limits: CgroupLimits): Promise<void> {
    for (const dir of this.dirs(name)) await mkdir(dir, { recursive: true });
    if (limits.cpus !== undefined && !this.parents.has("cpu")) throw new SandboxError("a CPU limit was asked for, but the cpu cgroup controller is not available here");
    const quota = limits.cpus === undefined ? undefined : Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US));
    if (this.version === 2) {
      const dir = this.dir("memory", name);
      if (limits.memoryBytes !== undefined) {
        await writeFile(join(dir, "memory.max"), String(limits.memoryBytes));
        if (await exists(join(dir, "memory.swap.max"))) await writeFile(join(dir, "memory.swap.max"), "0");
      }
      if (limits.pids !== undefined) await writeFile(join(dir, "pids.max"), String(limits.pids));
      if (quota !== undefined) await writeFile(join(dir, "cpu.max"), `${quota} ${CPU_PERIOD_US}`);
      return;
    }
    if (limits.memoryBytes !== undefined) {
      const dir = this.dir("memory", name);
      await writeFile(join(dir, "memory.limit_in_bytes"), String(limits.memoryBytes));
      // Without swap accounting a group could swap past its limit.
      if (await exists(join(dir, "memory.memsw.limit_in_bytes"))) await writeFile(join(dir, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes));
    }
    if (limits.pids !== undefined) await writeFile(join(this.dir("pids", name), "pids.max"), String(limits.pids));
    if (quota !== undefined) {
      const dir = this.dir("cpu", name);
      await writeFile(join(dir, "cpu.cfs_period_us"), String(CPU_PERIOD_US));
      await writeFile(join(dir, "cpu.cfs_quota_us"), String(quota));
    }
  }

  /** Moves a process (and its threads) into the group in every hierarchy. */
  async add(name: string, pid: number): Promise<void> {
    for (const dir of this.dirs(name)) await writeFile(join(dir, "cgroup.procs"), String(pid));
  }

  counters(name: string): CgroupCounters {
    if (this.version === 2) {
      const dir = this.dir("memory", name);
      return { oomKills: readCounter(join(dir, "memory.events"), "oom_kill"), pidsRefused: readCounter(join(dir, "pids.events"), "max") };
    }
    return {
      oomKills: readCounter(join(this.dir("memory", name), "memory.oom_control"), "oom_kill"),
      pidsRefused: readCounter(join(this.dir("pids", name), "pids.events"), "max"),
    };
  }

  /** Processes in the group. Every process joins every hierarchy, so the pids one tells for all. */
  members(name: string): number[] {
    return readOr(join(this.dir("pids", name), "cgroup.procs"), "")
      .split("\n")
      .filter((line) => line.trim())
      .map(Number);
  }

  /** Kills every process in the group but those in `spare`, and waits until only they are left. */
  async killAll(name: string, spare: readonly number[] = [], waitMs = 5000): Promise<void> {
    const deadline = Date.now() + waitMs;
    // cgroup.kill spares nothing: only when nothing is to be spared.
    if (this.version === 2 && spare.length === 0 && (await exists(join(this.dir("memory", name), "cgroup.kill")))) {
      await writeFile(join(this.dir("memory", name), "cgroup.kill"), "1").catch(() => undefined);
    }
    const freezer = this.parents.has("freezer") ? join(this.dir("freezer", name), "freezer.state") : undefined;
    for (let round = 0; ; round += 1) {
      const members = this.members(name).filter((pid) => !spare.includes(pid));
      if (members.length === 0) return;
      if (Date.now() > deadline) throw new SandboxError(`cgroup ${name} still has ${members.length} process(es) after SIGKILL`);
      if (freezer && round === 0) await this.freeze(freezer, true);
      for (const pid of members) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      if (freezer && round === 0) await this.freeze(freezer, false);
      await sleep(Math.min(2 ** round, 100));
    }
  }

  private async freeze(stateFile: string, frozen: boolean): Promise<void> {
    await writeFile(stateFile, frozen ? "FROZEN" : "THAWED").catch(() => undefined);
    for (let tries = 0; frozen && tries < 50; tries += 1) {
      if ((await readFile(stateFile, "utf8").catch(() => "FROZEN")).trim() === "FROZEN") return;
      await sleep(2);
    }
  }

  /** Kills what is left and removes the group in every hierarchy. */
  async remove(name: string): Promise<void> {
    await this.killAll(name);
    for (const dir of this.dirs(name)) {
      for (let tries = 0; ; tries += 1) {
        try {
          await rmdir(dir);
          break;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOENT") break;
          if (code !== "EBUSY" || tries >= 50) throw new SandboxError(`cannot remove cgroup ${dir}: ${(error as Error).message}`);
          await sleep(10);
        }
      }
    }
  }
}

async function enable(dir: string, controllers: string[]): Promise<void> {
  const enabled = (await readFile(join(dir, "cgroup.subtree_control"), "utf8").catch(() => "")).trim().split(/\s+/);
  const missing = controllers.filter((controller) => !enabled.includes(controller));
  if (missing.length > 0) await writeFile(join(dir, "cgroup.subtree_control"), missing.map((controller) => `+${controller}`).join(" "));
}

async function prepareV2Parent(layout: CgroupLayout, controllers: string[]): Promise<string> {
  const mount = layout.v2Mount ?? "/sys/fs/cgroup";
  const own = layout.ownDirs.get("memory") ?? mount;
  if (process.getuid?.() === 0 && own !== mount) {
    try {
      const parent = join(mount, PARENT);
      await enable(mount, controllers);
      await mkdir(parent, { recursive: true });
      await enable(parent, controllers);
      return parent;
    } catch {
      // Not the real root (a container's cgroup namespace): use our own cgroup as a delegated one.
    }
  }
  try {
    await enable(own, controllers).catch(async (error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
      // A cgroup holding processes hands no controllers down: move this process into a leaf.
      const leaf = join(own, "executor");
      await mkdir(leaf, { recursive: true });
      await writeFile(join(leaf, "cgroup.procs"), String(process.pid));
      await enable(own, controllers);
    });
    const parent = join(own, PARENT);
    await mkdir(parent, { recursive: true });
    await enable(parent, controllers);
    return parent;
  } catch (error) {
    throw new SandboxError(
      `cgroup v2: cannot hand the ${controllers.join(", ")} controllers down under ${own} (${(error as Error).message}); ` +
        `run the executor as root, or in a cgroup delegated to it (systemd: Delegate=yes) that holds no other processes`,
    );
  }
}
