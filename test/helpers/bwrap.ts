/** Shared by the bwrap tests and benchmark: the test images, and processes still in a job's cgroup. */
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/common/logger.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { ROOT } from "./cluster.ts";

/** Where scripts/test-images.sh put the test images (OCI layouts, archives, root filesystems). */
export const TEST_IMAGES = process.env.AIRLOCK_TEST_IMAGES ?? join(ROOT, ".test-images");

export function testImagesMissing(): string | undefined {
  return existsSync(join(TEST_IMAGES, "busybox", "oci", "index.json")) ? undefined : `no test images in ${TEST_IMAGES} (run scripts/test-images.sh ${TEST_IMAGES})`;
}

/** Why the bwrap runtime cannot run here (its probe, in a throwaway data dir), or undefined. */
export async function bwrapUnavailable(): Promise<string | undefined> {
  const probeDir = await mkdtemp(join(tmpdir(), "airlock-bwrap-probe-"));
  try {
    const probe = await new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: probeDir, images: [], logger: silentLogger }).probe();
    return probe.usable ? undefined : probe.detail;
  } finally {
    await rm(probeDir, { recursive: true, force: true });
  }
}

/**
 * Pids whose cgroup (any hierarchy) is a bwrap group of this job: what a step left running.
 * The job's launcher is left out: it is this process's own child, which no step's process can be
 * (a step's orphans go to the init of its pid namespace), and it lives until the sandbox goes.
 */
export async function processesOfJob(jobId: number): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const cgroups = await readFile(`/proc/${name}/cgroup`, "utf8").catch(() => "");
    const parent = /^PPid:\s+(\d+)$/m.exec(await readFile(`/proc/${name}/status`, "utf8").catch(() => ""))?.[1];
    if (cgroups.includes(`/airlock/job-${jobId}-`) && Number(parent) !== process.pid) found.push(`${name}: ${(await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ")}`);
  }
  return found;
}
