/**
 * The runtimes the adversarial suite runs against, each as an executor of a real cluster: how to
 * start it, why it cannot run here, and what it still has of a job after the job ended
 * (containers, VMs, cgroups, processes). The shell runtime is not a target: it runs steps on the
 * host by design (isolation none).
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../../src/common/logger.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { GvisorRuntime } from "../../src/runtimes/gvisor/index.ts";
import { bwrapUnavailable, processesOfJob, TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { dockerUnavailable, IMAGES, jobContainers, SOCKET } from "../runtimes/docker-target.ts";
import { DATA_DIR as MICROVM_DATA, microvmUnavailable, qemuOfJob } from "../runtimes/microvm-target.ts";

export interface ProbeTarget {
  name: string;
  isolation: "namespace" | "container" | "gvisor" | "vm";
  unavailable(): Promise<string | undefined>;
  /** Executor flags; `dir` is the cluster's temporary dir. */
  executorArgs(dir: string): string[];
  /** Where the executor puts job workspaces. */
  workspaceRoot(dir: string): string;
  /** Host dirs the executor keeps state in (a step must read nothing of them). */
  dataDirs(dir: string): string[];
  /** What is left of a job on the host: must be empty once the job ended. */
  leftovers(jobId: number): Promise<string[]>;
  /** Whether the sandbox's processes show in the host's process table (else leftovers covers them). */
  hostVisibleProcesses: boolean;
  /** Known exposures: probe id -> what it is, and the doc (under docs/) that must name it. */
  known: Record<string, { why: string; doc: string; mentions: RegExp }>;
  /** Time a job may take here. */
  jobTimeoutMs: number;
}

/** Cgroup dirs (any hierarchy) still named after the job. */
function cgroupsOfJob(jobId: number): string[] {
  const found: string[] = [];
  const roots = existsSync("/sys/fs/cgroup") ? readdirSync("/sys/fs/cgroup").map((name) => join("/sys/fs/cgroup", name)) : [];
  for (const root of ["/sys/fs/cgroup", ...roots]) {
    const parent = join(root, "airlock");
    if (!existsSync(parent)) continue;
    const walk = (dir: string, depth: number): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        if (entry.name.startsWith(`job-${jobId}-`)) found.push(join(dir, entry.name));
        else if (depth < 2) walk(join(dir, entry.name), depth + 1);
      }
    };
    walk(parent, 0);
  }
  return found;
}

const mountinfoKnown = (doc: string) => ({ why: `bind-mount sources show as host paths in /proc/self/mountinfo (docs/${doc})`, doc, mentions: /mountinfo/ });

export const TARGETS: ProbeTarget[] = [
  {
    name: "bwrap",
    isolation: "namespace",
    unavailable: async () => testImagesMissing() ?? (await bwrapUnavailable()),
    executorArgs: () => ["--images", TEST_IMAGES, "--default-image", IMAGES.primary],
    workspaceRoot: (dir) => join(dir, "executor-1", "workspaces"),
    dataDirs: (dir) => [join(dir, "executor-1"), join(dir, "coordinator")],
    leftovers: async (jobId) => [...(await processesOfJob(jobId)), ...cgroupsOfJob(jobId).map((path) => `cgroup ${path}`)],
    hostVisibleProcesses: true,
    known: { mountinfo: mountinfoKnown("bwrap.md") },
    jobTimeoutMs: 60_000,
  },
  {
    name: "docker",
    isolation: "container",
    unavailable: () => dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger })),
    executorArgs: () => ["--docker-host", SOCKET, "--default-image", IMAGES.primary],
    workspaceRoot: (dir) => join(dir, "executor-1", "workspaces"),
    dataDirs: (dir) => [join(dir, "executor-1"), join(dir, "coordinator")],
    leftovers: (jobId) => jobContainers(jobId),
    hostVisibleProcesses: true,
    known: { mountinfo: mountinfoKnown("docker.md") },
    jobTimeoutMs: 90_000,
  },
  {
    name: "gvisor",
    isolation: "gvisor",
    unavailable: () => dockerUnavailable(new GvisorRuntime({ host: SOCKET, ociRuntime: process.env.AIRLOCK_GVISOR_RUNTIME ?? "runsc", logger: silentLogger })),
    executorArgs: () => ["--docker-host", SOCKET, "--gvisor-runtime", process.env.AIRLOCK_GVISOR_RUNTIME ?? "runsc", "--default-image", IMAGES.primary],
    workspaceRoot: (dir) => join(dir, "executor-1", "workspaces"),
    dataDirs: (dir) => [join(dir, "executor-1"), join(dir, "coordinator")],
    leftovers: (jobId) => jobContainers(jobId),
    hostVisibleProcesses: false,
    known: {},
    jobTimeoutMs: 120_000,
  },
  {
    name: "microvm",
    isolation: "vm",
    unavailable: () => microvmUnavailable(),
    // One warm VM: two jobs at once (the other-workspace probe) without booting four VMs under TCG.
    executorArgs: (dir) => ["--data", MICROVM_DATA, "--workspace-root", join(dir, "workspaces"), "--images", TEST_IMAGES, "--default-image", IMAGES.primary, "--warm-vms", "1"],
    workspaceRoot: (dir) => join(dir, "workspaces"),
    dataDirs: (dir) => [MICROVM_DATA, join(dir, "coordinator")],
    leftovers: async (jobId) => qemuOfJob(jobId).map((pid) => `QEMU ${pid}`),
    hostVisibleProcesses: false,
    known: {},
    jobTimeoutMs: 300_000,
  },
];
