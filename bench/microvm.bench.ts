/**
 * The microvm runtime's costs, with the accelerator named, beside a bare QEMU boot of the same
 * kernel and initramfs to a shell command (`rdinit=/bin/sh -- -c "echo ...; poweroff -f"`, timed
 * from spawning QEMU to the marker on its console), in a VM of the same memory as a job's with
 * default resources (the kernel's boot time grows with memory under TCG; a 256 MiB bare boot is
 * shown too, for reference). One run, rows side by side:
 *   - boot to agent up (cold path): createSandbox, from its start (the disk files, QEMU, the guest
 *     kernel, the agent loading its port's modules) to the agent's hello on its port; the same
 *     point as the bare boot's marker. Target: within 10 % of the bare boot.
 *   - disks ready / first step running (cold): createSandbox's start -> the disks mounted / the
 *     first output byte of the job's first step
 *   - snapshot restore: a warm VM made by restoring the pool's snapshot (QEMU -incoming from the
 *     file, then the agent takes the host's clock and fresh entropy), against one booted by the
 *     pool (--warm-vm-refill boot): what a refill costs
 *   - warm pool: pickup -> first step running, when the job takes an idle VM (its workspace disk
 *     written, the disks mounted, the image hot-plugged, the step started). Target <= 1.0 s under
 *     TCG. Each run waits for both pools to be full first, so no refill overlaps the other figures.
 *   - image attach: the first step's image disk found in the per-image cache and hot-plugged;
 *     and, once, building an image's disk on first use (unpack + mkfs.ext4) in an empty cache
 *   - per-step cost after boot: one `exec` of `true` in the running VM
 *   - the workspace's way back: destroy of a VM whose step wrote 64 MiB
 *   - whole job: 3 tiny steps (sed, grep, wc) on a 3-file repository, submit -> completed,
 *     through a coordinator and an executor process, microvm (warm pool) against bwrap. Target:
 *     microvm <= 2 x bwrap + the warm pickup -> first step figure.
 *   - pool refill under load: an executor with --max-jobs 2 (so --warm-vms 2), once its pool is
 *     full, given BENCH_LOAD_JOBS jobs of `sleep 5` at once (the queue never empty): how many
 *     jobs had to boot their own VM because no warm one was ready. Target 0. Both refill modes.
 * Runs are interleaved so drift in the machine's load hits all alike; the load average is printed
 * before and after each part. One more VM boots with airlock.debug and its guest-clock stages
 * are printed: where a boot goes.
 *   scripts/bench.sh microvm          (BENCH_RUNS=8 for more samples)
 */
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/logger.ts";
import { sandboxLabels, stepScript, type Runtime, type Sandbox } from "../src/runtimes/index.ts";
import { chooseAccelerator, probeBoot } from "../src/runtimes/microvm/accel.ts";
import { loadGuest } from "../src/runtimes/microvm/guest.ts";
import { ImageDisks } from "../src/runtimes/microvm/image-disks.ts";
import { MicroVmRuntime } from "../src/runtimes/microvm/index.ts";
import { DEFAULT_MEMORY_BYTES, GUEST_OVERHEAD_MIB, type MicroVmSandbox } from "../src/runtimes/microvm/sandbox.ts";
import { DATA_DIR, IMAGES, microvmRuntime, microvmUnavailable, TEST_IMAGES } from "../test/runtimes/microvm-target.ts";
import { startCluster, waitForJob, type Cluster } from "../test/helpers/cluster.ts";
import { median, printTable } from "./lib.ts";
import { timeWholeJobs } from "./whole-job.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 6);
const JOB_RUNS = Number(process.env.BENCH_JOB_RUNS ?? 5);
const LOAD_JOBS = Number(process.env.BENCH_LOAD_JOBS ?? 8);
const LOAD_SLOTS = 2;
const STEPS = Number(process.env.BENCH_STEPS ?? 20);

const why = await microvmUnavailable();
if (why) {
  console.log(`microvm benchmark skipped: ${why}`);
  process.exit(0);
}
const guest = await loadGuest(DATA_DIR);
const accelerator = await chooseAccelerator(DATA_DIR, guest, silentLogger);
const runtime = microvmRuntime();
const root = await mkdtemp(join(tmpdir(), "airlock-microvm-bench-"));
const load = (): string => loadavg().map((value) => value.toFixed(2)).join(" ");
const loadBefore = load();
let job = 950_000;

/** A job's VM size with default resources: the bare boot gets the same memory as ours. */
const VM_MIB = Math.ceil(DEFAULT_MEMORY_BYTES / 1024 ** 2) + GUEST_OVERHEAD_MIB;

async function bare(kernel: string, memoryMiB = VM_MIB): Promise<number> {
  const result = await probeBoot({ kernel, initrd: guest.initrd }, accelerator.accelerator, 120_000, memoryMiB);
  if (!result.ok) throw new Error(`bare boot failed: ${result.why}`);
  return result.ms;
}

interface Run {
  boot: number;
  disks: number;
  firstStep: number;
  console: string;
  warm: boolean;
  restored: boolean;
  /** The VM's own boot (or restore) time, wherever it happened. */
  vmBootMs: number;
  attachMs: number;
}

async function ours(target: Runtime, stepCosts: number[] | undefined): Promise<Run> {
  job += 1;
  const workspace = join(root, `job-${job}`, "workspace");
  await mkdir(workspace, { recursive: true });
  const started = performance.now();
  let sandbox: MicroVmSandbox | undefined;
  try {
    sandbox = (await target.createSandbox(
      { jobId: job, attempt: 1, executorName: "bench", workspace, scratchDir: join(root, `job-${job}`, "sandbox"), resources: {}, labels: sandboxLabels("bench", job, 1), logger: silentLogger },
      new AbortController().signal,
    )) as MicroVmSandbox;
    const boot = performance.now() - started;
    let firstStep = 0;
    const step = { key: "first", image: IMAGES.primary, commands: ["echo running"], dir: ".", env: {} };
    const first = sandbox.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => (firstStep ||= performance.now() - started) }, new AbortController().signal);
    const disks = await sandbox.disksReady;
    await first;
    for (let i = 0; stepCosts && i < STEPS; i++) {
      const each = performance.now();
      const outcome = await sandbox.exec({ step: { ...step, key: `s${i}` }, env: {}, script: stepScript(["true"]) }, { write: () => undefined }, new AbortController().signal);
      if (outcome.exitCode !== 0) throw new Error(`step failed: ${JSON.stringify(outcome)}`);
      stepCosts.push(performance.now() - each);
    }
    return { boot, disks, firstStep, console: await sandbox.vm.consoleText(), warm: sandbox.warm, restored: sandbox.restored, vmBootMs: sandbox.vm.bootMs, attachMs: sandbox.imageAttachMs[0] ?? Number.NaN };
  } finally {
    await (sandbox as Sandbox | undefined)?.destroy();
    await rm(join(root, `job-${job}`), { recursive: true, force: true });
  }
}

/** ms for destroy() to bring back a workspace holding `mib` MiB of new data. */
async function returnCost(mib: number): Promise<number> {
  job += 1;
  const workspace = join(root, `job-${job}`, "workspace");
  await mkdir(workspace, { recursive: true });
  const sandbox = await runtime.createSandbox(
    { jobId: job, attempt: 1, executorName: "bench", workspace, scratchDir: join(root, `job-${job}`, "sandbox"), resources: {}, labels: sandboxLabels("bench", job, 1), logger: silentLogger },
    new AbortController().signal,
  );
  try {
    const step = { key: "write", image: IMAGES.primary, commands: [`dd if=/dev/zero of=data.bin bs=1M count=${mib} 2>/dev/null`], dir: ".", env: {} };
    const outcome = await sandbox.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => undefined }, new AbortController().signal);
    if (outcome.exitCode !== 0) throw new Error(`write failed: ${JSON.stringify(outcome)}`);
    const started = performance.now();
    await sandbox.destroy();
    return performance.now() - started;
  } finally {
    await sandbox.destroy();
    await rm(join(root, `job-${job}`), { recursive: true, force: true });
  }
}

/** The guest's boot stages (guest clock, seconds since its kernel started) from a debug console. */
function stages(consoleText: string): string[] {
  return consoleText
    .split("\n")
    .map((line) => /airlock-agent: (\d+\.\d+) (.*)$/.exec(line.trim()))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => `${match[1]} s  ${match[2]}`);
}

/** An image's disk built in an empty cache (unpack + mkfs.ext4), then found in it. */
async function imageDiskCosts(): Promise<{ buildMs: number; cachedMs: number }> {
  const dataDir = await mkdtemp(join(tmpdir(), "airlock-microvm-bench-images-"));
  try {
    const disks = new ImageDisks({ dataDir, sources: [TEST_IMAGES], hostPath: process.env.PATH ?? "", logger: silentLogger });
    let started = performance.now();
    await disks.disk(IMAGES.primary, () => undefined);
    const buildMs = performance.now() - started;
    started = performance.now();
    await disks.disk(IMAGES.primary, () => undefined);
    return { buildMs, cachedMs: performance.now() - started };
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

// Jobs default to network internet: the executor gives it (its pools: VMs with and without a network device).
const VM_EXECUTOR_ARGS = ["--data", DATA_DIR, "--images", TEST_IMAGES, "--default-image", IMAGES.primary];

/** Waits until the cluster's executor reports a full warm pool (its heartbeat's warmPool). */
async function poolFull(cluster: Cluster): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const pool = (await cluster.api.executors())[0]?.warmPool;
    if (pool && pool.size > 0 && pool.idle === pool.size) return;
    if (Date.now() > deadline) throw new Error(`the executor's warm pool did not fill: ${JSON.stringify(pool)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function wholeJobs(kind: "bwrap" | "microvm"): Promise<{ jobs: number[]; steps: number[] }> {
  const cluster = await startCluster({ runtime: kind, executors: 0 });
  try {
    cluster.startExecutor(kind === "microvm" ? [...VM_EXECUTOR_ARGS, "--workspace-root", join(cluster.dir, "workspaces")] : ["--images", TEST_IMAGES]);
    if (kind === "microvm") await poolFull(cluster);
    return await timeWholeJobs(cluster, kind === "microvm" ? "vm" : "namespace", IMAGES.primary, JOB_RUNS);
  } finally {
    await cluster.close();
  }
}

/** LOAD_JOBS jobs of 5 s at once on an executor with LOAD_SLOTS slots and a full pool: how many booted their own VM. */
async function refillUnderLoad(refill: "restore" | "boot"): Promise<{ warm: number; cold: number; ms: number }> {
  const cluster = await startCluster({ runtime: "microvm", executors: 0 });
  try {
    cluster.startExecutor([...VM_EXECUTOR_ARGS, "--workspace-root", join(cluster.dir, "workspaces"), "--max-jobs", String(LOAD_SLOTS), "--warm-vm-refill", refill]);
    await poolFull(cluster);
    const started = performance.now();
    const ids: number[] = [];
    for (let index = 0; index < LOAD_JOBS; index++) ids.push((await cluster.api.submit({ isolation: "vm", steps: [{ key: "work", image: IMAGES.primary, commands: ["sleep 5"] }] })).id);
    for (const id of ids) {
      const done = await waitForJob(cluster.api, id, undefined, 600_000);
      if (done.state !== "completed") throw new Error(`load job ${id} ended ${done.state}: ${done.failureMessage ?? ""}`);
    }
    const ms = performance.now() - started;
    const log = await readFile(join(cluster.dir, "executor-1.log"), "utf8");
    const count = (text: string): number => log.split("\n").filter((line) => line.includes(text)).length;
    return { warm: count("microVM taken from the warm pool"), cold: count("no warm VM fits or is ready"), ms };
  } finally {
    await cluster.close();
  }
}

try {
  // Warm-up: builds the image disk, fills the page cache with the kernel and initramfs.
  await ours(runtime, undefined);
  await bare(guest.kernel);
  const bareBoots: number[] = [];
  const smallBoots: number[] = [];
  const stockBoots: number[] = [];
  const runs: Run[] = [];
  const stepCosts: number[] = [];
  const restoredRuns: Run[] = [];
  const bootedRuns: Run[] = [];
  const warmRuntime = (refill: "restore" | "boot"): MicroVmRuntime =>
    new MicroVmRuntime({ dataDir: DATA_DIR, path: process.env.PATH ?? "", images: [TEST_IMAGES], defaultImage: IMAGES.primary, logger: silentLogger, warmVms: 1, warmVmRefill: refill });
  const restoring = warmRuntime("restore");
  const booting = warmRuntime("boot");
  await Promise.all([restoring.start(), booting.start()]);
  const snapshotStarted = performance.now();
  await restoring.pool?.filled(AbortSignal.timeout(300_000));
  const firstFill = performance.now() - snapshotStarted;
  for (let run = 0; run < RUNS; run++) {
    await Promise.all([restoring.pool?.filled(AbortSignal.timeout(300_000)), booting.pool?.filled(AbortSignal.timeout(300_000))]);
    bareBoots.push(await bare(guest.kernel));
    smallBoots.push(await bare(guest.kernel, 256));
    runs.push(await ours(runtime, run === 0 ? stepCosts : undefined));
    const restored = await ours(restoring, undefined);
    if (!restored.warm || !restored.restored) throw new Error("the restore pool's run did not take a restored VM");
    restoredRuns.push(restored);
    await booting.pool?.filled(AbortSignal.timeout(300_000));
    const booted = await ours(booting, undefined);
    if (!booted.warm || booted.restored) throw new Error("the boot pool's run did not take a booted warm VM");
    bootedRuns.push(booted);
  }
  await restoring.pool?.filled(AbortSignal.timeout(300_000));
  await booting.pool?.filled(AbortSignal.timeout(300_000));
  const restoredRss = restoring.poolStats()?.idleRssBytes ?? 0;
  const bootedRss = booting.poolStats()?.idleRssBytes ?? 0;
  await Promise.all([restoring.close(), booting.close()]);
  for (let run = 0; run < 2 && guest.bootFormat === "pvh-elf"; run++) stockBoots.push(await bare(guest.source));
  const returnMs = await returnCost(64);
  const imageDisk = await imageDiskCosts();
  const debugRuntime = new MicroVmRuntime({ dataDir: DATA_DIR, path: process.env.PATH ?? "", images: [TEST_IMAGES], defaultImage: IMAGES.primary, logger: silentLogger, debugBoot: true });
  const debugRun = await ours(debugRuntime, undefined);
  const boots = runs.map((run) => run.boot);
  const ratio = median(boots) / median(bareBoots);
  const pairedRatio = median(boots.map((boot, run) => boot / (bareBoots[run] ?? Number.NaN)));
  const warmFirst = median(restoredRuns.map((run) => run.firstStep));
  const mib = (bytes: number): number => Math.round(bytes / 1024 ** 2);
  console.log(`accelerator: ${accelerator.detail}; guest kernel ${guest.kernelVersion} booted as ${guest.bootFormat}; ${RUNS} runs, medians in ms`);
  console.log(`load average (1, 5, 15 min): ${loadBefore} before, ${load()} after the VM rows (2 cores, shared)\n`);
  printTable(
    ["measure", "bare / peer", "airlock microvm", "ratio", "target"],
    [
      [`cold path, boot: bare to a shell command; ours to the agent up (createSandbox); both ${VM_MIB} MiB, 1 vCPU`, median(bareBoots), median(boots), ratio, "<= 1.10"],
      ["  the same, median of each run's ratio", "", "", pairedRatio, "<= 1.10"],
      ["  bare boot of a 256 MiB VM (the accelerator probe's size), for reference", median(smallBoots), "", median(boots) / median(smallBoots), ""],
      ["cold path: disks ready (drivers loaded, workspace and scratch mounted)", "", median(runs.map((run) => run.disks)), "", ""],
      ["cold path: job start -> first step running", "", median(runs.map((run) => run.firstStep)), "", ""],
      ["snapshot restore: a warm VM restored (QEMU -incoming + fresh clock and entropy); ratio to the bare boot", median(bareBoots), median(restoredRuns.map((run) => run.vmBootMs)), median(restoredRuns.map((run) => run.vmBootMs)) / median(bareBoots), "faster than a boot"],
      ["  a warm VM booted instead (--warm-vm-refill boot), to the agent up", "", median(bootedRuns.map((run) => run.vmBootMs)), median(bootedRuns.map((run) => run.vmBootMs)) / median(bareBoots), ""],
      [`  the pool's first fill: boot a template, save the snapshot, restore (${mib(restoredRss)} MiB idle RSS restored vs ${mib(bootedRss)} MiB booted)`, "", firstFill, "", ""],
      ["warm pool: pickup -> first step running (a restored VM)", "", warmFirst, warmFirst / median(bareBoots), "<= 1000 ms"],
      ["  the same, a booted warm VM", "", median(bootedRuns.map((run) => run.firstStep)), "", "<= 1000 ms"],
      ["  warm pool: pickup -> disks mounted (restored)", "", median(restoredRuns.map((run) => run.disks)), "", ""],
      ["image attach: first step's image disk from the cache, hot-plugged (restored VM)", "", median(restoredRuns.map((run) => run.attachMs)), "", ""],
      ["  image disk built on first use in an empty cache (unpack + mkfs.ext4; once per image) / found in the cache", imageDisk.buildMs, imageDisk.cachedMs, "", ""],
      [`per step after boot (\`true\`, ${stepCosts.length} steps)`, "", median(stepCosts), "", ""],
      ["workspace back from the VM, 64 MiB written (destroy)", "", returnMs, `${(64 / (returnMs / 1000)).toFixed(0)} MiB/s`, ""],
      ...(stockBoots.length ? [[`bare boot of the stock compressed kernel (reference, ${stockBoots.length} runs)`, median(stockBoots), "", "", ""] as (string | number)[]] : []),
    ],
  );
  const all = (values: number[]): string => values.map(Math.round).join(" ");
  console.log(
    `\nall runs (ms): bare ${all(bareBoots)}; bare 256 MiB ${all(smallBoots)}; cold: agent up ${all(boots)}, first step ${all(runs.map((run) => run.firstStep))}; ` +
      `restored: restore ${all(restoredRuns.map((run) => run.vmBootMs))}, first step ${all(restoredRuns.map((run) => run.firstStep))}, attach ${all(restoredRuns.map((run) => run.attachMs))}; ` +
      `booted warm: boot ${all(bootedRuns.map((run) => run.vmBootMs))}, first step ${all(bootedRuns.map((run) => run.firstStep))}`,
  );
  console.log(`\nwhere a boot goes (one more VM, booted with airlock.debug; guest clock; agent up ${Math.round(debugRun.boot)} ms, disks ready ${Math.round(debugRun.disks)} ms on the host's clock):`);
  for (const line of stages(debugRun.console)) console.log(`  ${line}`);

  // Through a coordinator and executor processes: the whole-job and refill-under-load rows.
  const loadBeforeJobs = load();
  const bwrapJobs = await wholeJobs("bwrap");
  const vmJobs = await wholeJobs("microvm");
  const loadAfterJobs = load();
  const underLoad = { restore: await refillUnderLoad("restore"), boot: await refillUnderLoad("boot") };
  const jobTarget = 2 * median(bwrapJobs.jobs) + warmFirst;
  console.log(`\nthrough a coordinator and an executor process; load average ${loadBeforeJobs} before, ${loadAfterJobs} after the whole jobs, ${load()} after the refill runs\n`);
  printTable(
    ["measure", "bare / peer", "airlock microvm", "ratio", "target"],
    [
      ["warm pool: pickup -> first step running (from the table above)", "", warmFirst, "", "<= 1000 ms"],
      [`whole job, 3 tiny steps, submit -> completed (${JOB_RUNS} runs): bwrap / microvm with a warm pool`, median(bwrapJobs.jobs), median(vmJobs.jobs), median(vmJobs.jobs) / median(bwrapJobs.jobs), `<= ${Math.round(jobTarget)} ms (2 x bwrap + first step)`],
      [`pool refill under load, --max-jobs ${LOAD_SLOTS}, ${LOAD_JOBS} jobs of 5 s at once: jobs that booted their own VM, refill by restore`, "", String(underLoad.restore.cold), `${underLoad.restore.warm} warm; ${Math.round(underLoad.restore.ms)} ms`, "0"],
      ["  the same, refill by boot", "", String(underLoad.boot.cold), `${underLoad.boot.warm} warm; ${Math.round(underLoad.boot.ms)} ms`, "0"],
    ],
  );
  console.log(`\nwhole jobs (ms): bwrap ${all(bwrapJobs.jobs)}, microvm ${all(vmJobs.jobs)}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
