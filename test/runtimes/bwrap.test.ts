/** The bwrap runtime against the promise suite: every promise applies (isolation namespace, read-only image root). */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../src/common/logger.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { processesOfJob, TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { runtimePromiseSuite } from "./promise-suite.ts";

let dataDir: string | undefined;

runtimePromiseSuite({
  name: "bwrap",
  isolated: true,
  readOnlyRoot: true,
  images: { primary: "airlock-test/busybox", secondary: "airlock-test/tools" },
  async setup() {
    const missing = testImagesMissing();
    if (missing) return { skip: missing };
    dataDir = await mkdtemp(join(tmpdir(), "airlock-bwrap-"));
    const runtime = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir, images: [TEST_IMAGES], logger: silentLogger });
    const probe = await runtime.probe();
    if (!probe.usable) return { skip: probe.detail };
    return { runtime };
  },
  async teardown() {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  },
  async leftovers(jobId) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    return processesOfJob(jobId);
  },
});
