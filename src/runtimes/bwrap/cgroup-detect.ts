/**
 * Finding the cgroup hierarchies of this host, at run time: v2 (one unified hierarchy, most
 * current distributions), or v1 (one hierarchy per controller, as on this project's machines,
 * which also mount an empty v2 hierarchy at /sys/fs/cgroup/unified). v2 is used when it has the
 * memory and pids controllers; otherwise v1 when memory and pids are mounted there.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export interface MountedHierarchy {
  version: 1 | 2;
  mountPoint: string;
  /** Path of the mount's root inside the hierarchy (not "/" inside some containers). */
  root: string;
  controllers: string[];
}

export interface CgroupLayout {
  version: 1 | 2;
  /** Controller name -> directory of this process's own cgroup in that controller's hierarchy. */
  ownDirs: Map<string, string>;
  /** v2: the hierarchy's mount point (its root cgroup when not in a container). */
  v2Mount?: string | undefined;
}

const V1_CONTROLLERS = ["memory", "pids", "cpu", "freezer"];

// mountinfo escapes spaces and a few other characters in paths as octal.
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMountinfo(text: string): MountedHierarchy[] {
  const found: MountedHierarchy[] = [];
  for (const line of text.split("\n")) {
    const [before, after] = line.split(" - ");
    if (!before || !after) continue;
    const fields = before.split(" ");
    const [fstype, , superOptions = ""] = after.split(" ");
    const root = unescape(fields[3] ?? "/");
    const mountPoint = unescape(fields[4] ?? "");
    if (fstype === "cgroup2") found.push({ version: 2, mountPoint, root, controllers: [] });
    if (fstype === "cgroup") {
      const controllers = superOptions.split(",").filter((option) => V1_CONTROLLERS.includes(option) || option === "cpuacct");
      if (controllers.length > 0) found.push({ version: 1, mountPoint, root, controllers });
    }
  }
  return found;
}

/** `/proc/self/cgroup`: controller -> path ("" for the v2 line). */
export function parseProcCgroup(text: string): Map<string, string> {
  const paths = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    const controllers = match[2] ?? "";
    const path = match[3] ?? "/";
    if (controllers === "") paths.set("", path);
    for (const controller of controllers.split(",")) if (controller) paths.set(controller, path);
  }
  return paths;
}

function dirFor(hierarchy: MountedHierarchy, path: string): string {
  const inside = hierarchy.root !== "/" && path.startsWith(hierarchy.root) ? path.slice(hierarchy.root.length) : path;
  return join(hierarchy.mountPoint, inside.startsWith("/..") ? "/" : inside);
}

/** The hierarchy to use here, or why none can be. */
export async function detectCgroups(): Promise<CgroupLayout | { problem: string }> {
  let mountinfo: string;
  let own: string;
  try {
    [mountinfo, own] = await Promise.all([readFile("/proc/self/mountinfo", "utf8"), readFile("/proc/self/cgroup", "utf8")]);
  } catch (error) {
    return { problem: `cannot read /proc/self/mountinfo or /proc/self/cgroup: ${(error as Error).message}` };
  }
  const hierarchies = parseMountinfo(mountinfo);
  const paths = parseProcCgroup(own);
  const unified = hierarchies.find((hierarchy) => hierarchy.version === 2);
  if (unified && paths.has("")) {
    const ownDir = dirFor(unified, paths.get("") ?? "/");
    const available = await readFile(join(unified.mountPoint, "cgroup.controllers"), "utf8").then(
      (text) => text.trim().split(/\s+/),
      () => [] as string[],
    );
    if (available.includes("memory") && available.includes("pids")) {
      const ownDirs = new Map(["memory", "pids", "cpu"].filter((name) => available.includes(name)).map((name) => [name, ownDir]));
      return { version: 2, ownDirs, v2Mount: unified.mountPoint };
    }
  }
  const ownDirs = new Map<string, string>();
  for (const hierarchy of hierarchies.filter((candidate) => candidate.version === 1)) {
    for (const controller of hierarchy.controllers) {
      if (!V1_CONTROLLERS.includes(controller)) continue;
      const path = paths.get(controller);
      if (path !== undefined) ownDirs.set(controller, dirFor(hierarchy, path));
    }
  }
  if (ownDirs.has("memory") && ownDirs.has("pids")) return { version: 1, ownDirs };
  return {
    problem: unified
      ? "the cgroup v2 hierarchy lacks the memory or pids controller, and no cgroup v1 hierarchy has them"
      : "no cgroup hierarchy with the memory and pids controllers is mounted",
  };
}
