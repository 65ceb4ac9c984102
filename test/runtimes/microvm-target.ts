/**
 * What the microvm tests share: a data dir with the guest (built once, kept between runs in
 * .test-images/microvm-data), the test images' OCI layouts, and "leftovers": for a job whose VM
 * is still up, the processes in the guest besides its agent; once it is destroyed, any QEMU
 * process still labelled with the job.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { silentLogger } from "../../src/common/logger.ts";
import type { Runtime, Sandbox, SandboxSpec } from "../../src/runtimes/index.ts";
import { installGuest } from "../../src/runtimes/microvm/guest.ts";
import { MicroVmRuntime, vmProcesses } from "../../src/runtimes/microvm/index.ts";
import { jobOfWarmVm, POOL_MARKER_PREFIX } from "../../src/runtimes/microvm/pool.ts";
import type { MicroVmSandbox } from "../../src/runtimes/microvm/sandbox.ts";

export const REPO = resolve(import.meta.dirname, "../..");
export const TEST_IMAGES = process.env.AIRLOCK_TEST_IMAGES ?? join(REPO, ".test-images");
export const DATA_DIR = process.env.AIRLOCK_MICROVM_TEST_DATA ?? join(TEST_IMAGES, "microvm-data");
export const IMAGES = { primary: "airlock-test/busybox", secondary: "airlock-test/tools" };
const PATH = process.env.PATH ?? "/usr/bin:/bin";

/** Why microVMs cannot run here, or undefined. Builds the guest when it is missing or stale. */
export async function microvmUnavailable(): Promise<string | undefined> {
  if (spawnSync("sh", ["-c", "command -v qemu-system-x86_64"]).status !== 0) return "qemu-system-x86_64 is not installed (scripts/setup.d/40-microvm.sh install)";
  if (!existsSync(join(TEST_IMAGES, "busybox", "oci"))) return `test images are missing in ${TEST_IMAGES} (scripts/test-images.sh builds them)`;
  try {
    await installGuest({ dataDir: DATA_DIR, logger: silentLogger });
  } catch (error) {
    return `the microVM guest cannot be built here: ${(error as Error).message}`;
  }
  return undefined;
}

const live = new Map<number, MicroVmSandbox>();
const destroyed = new Set<number>();

/** The runtime, with every sandbox it makes remembered (for `leftovers`). */
export function microvmRuntime(): Runtime {
  const runtime = new MicroVmRuntime({ dataDir: DATA_DIR, path: PATH, images: [TEST_IMAGES], defaultImage: IMAGES.primary, logger: silentLogger });
  const createSandbox = runtime.createSandbox.bind(runtime);
  runtime.createSandbox = async (spec: SandboxSpec, signal: AbortSignal): Promise<Sandbox> => {
    const sandbox = (await createSandbox(spec, signal)) as MicroVmSandbox;
    live.set(spec.jobId, sandbox);
    const destroy = sandbox.destroy.bind(sandbox);
    sandbox.destroy = async () => {
      destroyed.add(spec.jobId);
      await destroy();
    };
    return sandbox;
  };
  return runtime;
}

/** QEMU processes of the job: VMs booted for it, and warm-pool VMs it took. */
export function qemuOfJob(jobId: number): number[] {
  const booted = vmProcesses((_marker, environ) => environ.split("\0").includes(`AIRLOCK_JOB=${jobId}`));
  return [...booted, ...vmProcesses((marker) => marker.startsWith(POOL_MARKER_PREFIX)).filter((pid) => jobOfWarmVm(pid) === jobId)];
}

export async function leftovers(jobId: number): Promise<string[]> {
  const sandbox = live.get(jobId);
  if (sandbox && !destroyed.has(jobId) && sandbox.vm.alive) return (await sandbox.processes()).map((line) => `in the VM: ${line}`);
  return qemuOfJob(jobId).map((pid) => `QEMU ${pid}: ${readFileSync(`/proc/${pid}/cmdline`, "latin1").slice(0, 120)}`);
}
