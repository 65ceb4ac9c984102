/**
 * bwrap cgroups: detection of v1, v2 and hybrid hosts from /proc, and what a dead executor left
 * behind (a job's cgroup with processes still in it) being found and removed at the next start.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { parseMountinfo, parseProcCgroup } from "../../src/runtimes/bwrap/cgroup-detect.ts";
import { groupExecutorPid, groupName } from "../../src/runtimes/bwrap/cgroups.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { sandboxLabels, stepScript } from "../../src/runtimes/index.ts";
import { LABEL } from "../../src/runtimes/labels.ts";
import { processesOfJob, TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";

const HYBRID = `25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
30 25 0:27 / /sys/fs/cgroup/net_cls rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls`;
const UNIFIED = `35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot`;

describe("bwrap cgroup detection", () => {
  it("reads v1 controllers (co-mounted too) and the v2 mount from mountinfo", () => {
    const hybrid = parseMountinfo(HYBRID);
    assert.deepEqual(
      hybrid.map((mount) => [mount.version, mount.mountPoint, mount.controllers.join("+")]),
      [
        [2, "/sys/fs/cgroup/unified", ""],
        [1, "/sys/fs/cgroup/memory", "memory"],
        [1, "/sys/fs/cgroup/cpu,cpuacct", "cpu+cpuacct"],
        [1, "/sys/fs/cgroup/pids", "pids"],
      ],
    );
    assert.deepEqual(
      parseMountinfo(UNIFIED).map((mount) => [mount.version, mount.mountPoint]),
      [[2, "/sys/fs/cgroup"]],
    );
  });

  it("reads this process's cgroup per controller", () => {
    const paths = parseProcCgroup("12:pids:/user.slice\n4:cpu,cpuacct:/\n1:name=systemd:/user.slice/x.scope\n0::/user.slice/x.scope\n");
    assert.equal(paths.get("pids"), "/user.slice");
    assert.equal(paths.get("cpu"), "/");
    assert.equal(paths.get("cpuacct"), "/");
    assert.equal(paths.get(""), "/user.slice/x.scope");
  });

  it("names groups so that the executor pid can be read back, whatever the executor's name", () => {
    const name = groupName(12, 3, 4567, "host name/with:odd chars");
    assert.match(name, /^job-12-3\.pid-4567\.[\w.-]+$/);
    assert.equal(groupExecutorPid(name), 4567);
    assert.equal(groupExecutorPid("system.slice"), undefined);
  });
});

describe("bwrap leftovers of a dead executor", () => {
  let root: string;
  let skipReason: string | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-bwrap-leftovers-"));
    skipReason = testImagesMissing();
    if (!skipReason) {
      const probe = await new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "probe"), images: [], logger: silentLogger }).probe();
      if (!probe.usable) skipReason = probe.detail;
    }
    if (skipReason) process.stdout.write(`# SKIP bwrap leftovers: ${skipReason}\n`);
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("a job cgroup whose executor is gone is emptied and removed at the next executor's start", async (t) => {
    if (skipReason) return t.skip(skipReason);
    let deadPid = 4_194_100;
    while (existsSync(`/proc/${deadPid}`)) deadPid += 1;
    const jobId = 910_000 + Math.floor(Math.random() * 1000);
    const workspace = join(root, "workspace");
    await mkdir(workspace, { recursive: true });
    const dead = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "data"), images: [TEST_IMAGES], logger: silentLogger });
    const labels = { ...sandboxLabels("dead-executor", jobId, 1), [LABEL.executorPid]: String(deadPid) };
    const box = await dead.createSandbox({ jobId, attempt: 1, executorName: "dead-executor", workspace, scratchDir: root, resources: {}, labels, logger: silentLogger }, new AbortController().signal);
    const step = { key: "linger", image: "airlock-test/busybox", commands: ["sleep 300"], dir: ".", env: {} };
    const running = box.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => undefined }, new AbortController().signal);
    for (let tries = 0; (await processesOfJob(jobId)).length === 0 && tries < 100; tries += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.notDeepEqual(await processesOfJob(jobId), [], "the step is running in the job's cgroup");

    const next = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "data"), images: [TEST_IMAGES], logger: silentLogger });
    assert.ok((await next.reapLeftovers()) >= 1, "the next executor reaps the group");
    const outcome = await running;
    assert.notEqual(outcome.exitCode, 0, "the step was killed");
    assert.deepEqual(await processesOfJob(jobId), []);
    assert.deepEqual(await findGroup(`job-${jobId}-1.pid-${deadPid}.`), [], "no cgroup of the job is left in any hierarchy");
  });
});

/** Directories named like the group under any cgroup hierarchy's airlock/ parents (searched shallowly). */
async function findGroup(prefix: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (dir: string, depth: number): Promise<void> => {
    if (depth > 5) return;
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!entry.isDirectory()) continue;
      const path = join(dir, entry.name);
      if (entry.name.startsWith(prefix)) found.push(path);
      else if (entry.name === "airlock" || depth < 3) await visit(path, depth + 1);
    }
  };
  await visit("/sys/fs/cgroup", 0);
  return found;
}
