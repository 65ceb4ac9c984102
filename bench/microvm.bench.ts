/**
 * The microvm runtime's costs, with the accelerator named, beside a bare QEMU boot of the same
 * kernel and initramfs to a shell command (`rdinit=/bin/sh -- -c "echo ...; poweroff -f"`, timed
 * from spawning QEMU to the marker on its console), in a VM of the same memory as a job's with
 * default resources (the kernel's boot time grows with memory under TCG; a 256 MiB bare boot is
 * shown too, for reference):
 *   - boot to agent up: createSandbox, from its start (the disk files, QEMU, the guest kernel, the
 *     agent loading its port's modules) to the agent's hello on its port; the same point as the
 *     bare boot's marker. Target: within 10 % of the bare boot.
 *   - disks ready: createSandbox's start -> the guest has loaded the disk drivers (virtio_blk,
 *     ext4, overlay) and mounted the workspace and scratch disks; every exec waits for it
 *   - first step running: createSandbox's start -> first output byte of the job's first step
 *     (image disk cached, hot-plugged; target <= 6 s under TCG)
 *   - per-step cost after boot: one `exec` of `true` in the running VM
 *   - warm pool (--warm-vms 1): pickup -> first step running, when the job takes a pre-booted VM
 *     (its workspace disk written, the disks mounted, the image hot-plugged, the step started);
 *     the pool's replacement boots meanwhile, as in an executor. Target: <= 1.0 s under TCG.
 *     Each run waits for the pool to be full again first, so no boot overlaps the other figures.
 *   - the workspace's way back: destroy of a VM whose step wrote 64 MiB (a tar on the return disk,
 *     unpacked with path checks on the host)
 * Runs are interleaved so drift in the machine's load hits both alike, and the boot ratio is given
 * both as the ratio of the medians and as the median of each run's ratio; the load average is
 * printed. One more VM boots with airlock.debug and its guest-clock stages are printed: where a
 * boot goes. The stock compressed kernel (what the ENVIRONMENT notes boot) is shown for reference.
 *   scripts/bench.sh microvm          (BENCH_RUNS=8 for more samples)
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/logger.ts";
import { sandboxLabels, stepScript, type Runtime, type Sandbox } from "../src/runtimes/index.ts";
import { chooseAccelerator, probeBoot } from "../src/runtimes/microvm/accel.ts";
import { loadGuest } from "../src/runtimes/microvm/guest.ts";
import { MicroVmRuntime } from "../src/runtimes/microvm/index.ts";
import { DEFAULT_MEMORY_BYTES, GUEST_OVERHEAD_MIB, type MicroVmSandbox } from "../src/runtimes/microvm/sandbox.ts";
import { DATA_DIR, IMAGES, microvmRuntime, microvmUnavailable, TEST_IMAGES } from "../test/runtimes/microvm-target.ts";
import { median, printTable } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 8);
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
    return { boot, disks, firstStep, console: await sandbox.vm.consoleText(), warm: sandbox.warm };
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

try {
  // Warm-up: builds the image disk, fills the page cache with the kernel and initramfs.
  await ours(runtime, undefined);
  await bare(guest.kernel);
  const bareBoots: number[] = [];
  const smallBoots: number[] = [];
  const stockBoots: number[] = [];
  const runs: Run[] = [];
  const stepCosts: number[] = [];
  const warmRuns: Run[] = [];
  const warmRuntime = new MicroVmRuntime({ dataDir: DATA_DIR, path: process.env.PATH ?? "", images: [TEST_IMAGES], defaultImage: IMAGES.primary, logger: silentLogger, warmVms: 1 });
  await warmRuntime.start();
  const refills: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const waited = performance.now();
    await warmRuntime.pool?.filled(AbortSignal.timeout(180_000));
    if (run > 0) refills.push(performance.now() - waited);
    bareBoots.push(await bare(guest.kernel));
    smallBoots.push(await bare(guest.kernel, 256));
    runs.push(await ours(runtime, run === 0 ? stepCosts : undefined));
    const warm = await ours(warmRuntime, undefined);
    if (!warm.warm) throw new Error("the warm-pool run booted its own VM");
    warmRuns.push(warm);
  }
  const idleRss = (await warmRuntime.pool?.filled(AbortSignal.timeout(180_000)), warmRuntime.poolStats()?.idleRssBytes ?? 0);
  await warmRuntime.close();
  for (let run = 0; run < 2 && guest.bootFormat === "pvh-elf"; run++) stockBoots.push(await bare(guest.source));
  const returnMs = await returnCost(64);
  const debugRuntime = new MicroVmRuntime({ dataDir: DATA_DIR, path: process.env.PATH ?? "", images: [TEST_IMAGES], defaultImage: IMAGES.primary, logger: silentLogger, debugBoot: true });
  const debugRun = await ours(debugRuntime, undefined);
  const boots = runs.map((run) => run.boot);
  const ratio = median(boots) / median(bareBoots);
  const pairedRatio = median(boots.map((boot, run) => boot / (bareBoots[run] ?? Number.NaN)));
  console.log(`accelerator: ${accelerator.detail}; guest kernel ${guest.kernelVersion} booted as ${guest.bootFormat}; ${RUNS} runs, medians in ms`);
  console.log(`load average (1, 5, 15 min): ${loadBefore} before, ${load()} after (2 cores, shared)\n`);
  printTable(
    ["measure", "bare QEMU", "airlock microvm", "ratio", "target"],
    [
      [`boot: bare to a shell command; ours to the agent up (createSandbox); both ${VM_MIB} MiB, 1 vCPU`, median(bareBoots), median(boots), ratio, "<= 1.10"],
      ["  the same, median of each run's ratio", "", "", pairedRatio, "<= 1.10"],
      ["  bare boot of a 256 MiB VM (the accelerator probe's size), for reference", median(smallBoots), "", median(boots) / median(smallBoots), ""],
      ["disks ready (drivers loaded, workspace and scratch mounted)", "", median(runs.map((run) => run.disks)), "", ""],
      ["job start -> first step running (cold: boots its VM)", "", median(runs.map((run) => run.firstStep)), "", "<= 6000 ms"],
      ["warm pool: pickup -> first step running (a pre-booted VM)", "", median(warmRuns.map((run) => run.firstStep)), median(warmRuns.map((run) => run.firstStep)) / median(bareBoots), "<= 1000 ms"],
      ["  warm pool: pickup -> disks mounted", "", median(warmRuns.map((run) => run.disks)), "", ""],
      [`  warm pool: a replacement left to boot after the job (${refills.length} runs; idle VM RSS ${Math.round(idleRss / 1024 ** 2)} MiB)`, "", refills.length ? median(refills) : "", "", ""],
      [`per step after boot (\`true\`, ${stepCosts.length} steps)`, "", median(stepCosts), "", ""],
      ["workspace back from the VM, 64 MiB written (destroy)", "", returnMs, `${(64 / (returnMs / 1000)).toFixed(0)} MiB/s`, ""],
      ...(stockBoots.length ? [[`bare boot of the stock compressed kernel (reference, ${stockBoots.length} runs)`, median(stockBoots), "", "", ""] as (string | number)[]] : []),
    ],
  );
  const all = (values: number[]): string => values.map(Math.round).join(" ");
  console.log(`\nall runs (ms): bare ${all(bareBoots)}; bare 256 MiB ${all(smallBoots)}; ours: agent up ${all(boots)}, disks ready ${all(runs.map((run) => run.disks))}, first step ${all(runs.map((run) => run.firstStep))}; warm pool: first step ${all(warmRuns.map((run) => run.firstStep))}`);
  console.log(`\nwhere a boot goes (one more VM, booted with airlock.debug; guest clock; agent up ${Math.round(debugRun.boot)} ms, disks ready ${Math.round(debugRun.disks)} ms on the host's clock):`);
  for (const line of stages(debugRun.console)) console.log(`  ${line}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
