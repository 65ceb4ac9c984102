/**
 * The microvm runtime's costs, with the accelerator named, beside a bare QEMU boot of the same
 * kernel and initramfs to a shell command (`rdinit=/bin/sh -- -c "echo ...; poweroff -f"`):
 *   - boot: createSandbox (the two disks, QEMU, modules, mounts, the agent's hello) vs the bare boot
 *   - first step running: createSandbox start -> first output byte of the job's first step
 *     (image disk cached; target <= 6 s under TCG)
 *   - per-step cost after boot: one `exec` of `true` in the running VM
 *   - the workspace's way back: destroy of a VM whose step wrote 64 MiB (a tar on the return disk,
 *     unpacked with path checks on the host)
 * Runs are interleaved so drift in the machine's load hits both alike. Target: boot ratio <= 1.10.
 * The stock compressed kernel (what the ENVIRONMENT notes boot) is shown too, for reference.
 *   scripts/bench.sh microvm          (BENCH_RUNS=8 for more samples)
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/logger.ts";
import { sandboxLabels, stepScript, type Sandbox } from "../src/runtimes/index.ts";
import { chooseAccelerator, probeBoot } from "../src/runtimes/microvm/accel.ts";
import { loadGuest } from "../src/runtimes/microvm/guest.ts";
import type { MicroVmSandbox } from "../src/runtimes/microvm/sandbox.ts";
import { DATA_DIR, IMAGES, microvmRuntime, microvmUnavailable } from "../test/runtimes/microvm-target.ts";
import { median, printTable } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
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
let job = 950_000;

async function bare(kernel: string): Promise<number> {
  const result = await probeBoot({ kernel, initrd: guest.initrd }, accelerator.accelerator, 120_000);
  if (!result.ok) throw new Error(`bare boot failed: ${result.why}`);
  return result.ms;
}

async function ours(stepCosts: number[] | undefined): Promise<{ boot: number; firstStep: number }> {
  job += 1;
  const workspace = join(root, `job-${job}`, "workspace");
  await mkdir(workspace, { recursive: true });
  const started = performance.now();
  let sandbox: Sandbox | undefined;
  try {
    sandbox = await runtime.createSandbox(
      { jobId: job, attempt: 1, executorName: "bench", workspace, scratchDir: join(root, `job-${job}`, "sandbox"), resources: {}, labels: sandboxLabels("bench", job, 1), logger: silentLogger },
      new AbortController().signal,
    );
    const boot = performance.now() - started;
    let firstStep = 0;
    const step = { key: "first", image: IMAGES.primary, commands: ["echo running"], dir: ".", env: {} };
    await sandbox.exec({ step, env: {}, script: stepScript(step.commands) }, { write: () => (firstStep ||= performance.now() - started) }, new AbortController().signal);
    for (let i = 0; stepCosts && i < STEPS; i++) {
      const each = performance.now();
      const outcome = await sandbox.exec({ step: { ...step, key: `s${i}` }, env: {}, script: stepScript(["true"]) }, { write: () => undefined }, new AbortController().signal);
      if (outcome.exitCode !== 0) throw new Error(`step failed: ${JSON.stringify(outcome)}`);
      stepCosts.push(performance.now() - each);
    }
    return { boot, firstStep };
  } finally {
    await (sandbox as MicroVmSandbox | undefined)?.destroy();
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

try {
  // Warm-up: builds the image disk, fills the page cache with the kernel and initramfs.
  await ours(undefined);
  await bare(guest.kernel);
  const bareBoots: number[] = [];
  const stockBoots: number[] = [];
  const boots: number[] = [];
  const firstSteps: number[] = [];
  const stepCosts: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    bareBoots.push(await bare(guest.kernel));
    const result = await ours(run === 0 ? stepCosts : undefined);
    boots.push(result.boot);
    firstSteps.push(result.firstStep);
    if (guest.bootFormat === "pvh-elf") stockBoots.push(await bare(guest.source));
  }
  const returnMs = await returnCost(64);
  const ratio = median(boots) / median(bareBoots);
  console.log(`accelerator: ${accelerator.detail}; guest kernel ${guest.kernelVersion} booted as ${guest.bootFormat}; ${RUNS} runs, medians in ms\n`);
  printTable(
    ["measure", "bare QEMU", "airlock microvm", "ratio", "target"],
    [
      ["boot (bare: to a shell command; ours: createSandbox)", median(bareBoots), median(boots), ratio, "<= 1.10"],
      ["job start -> first step running", "", median(firstSteps), "", "<= 6000 ms"],
      [`per step after boot (\`true\`, ${stepCosts.length} steps)`, "", median(stepCosts), "", ""],
      ["workspace back from the VM, 64 MiB written (destroy)", "", returnMs, `${(64 / (returnMs / 1000)).toFixed(0)} MiB/s`, ""],
      ...(stockBoots.length ? [["bare boot of the stock compressed kernel (reference)", median(stockBoots), "", "", ""] as (string | number)[]] : []),
    ],
  );
  console.log(`\nall runs (ms): bare ${bareBoots.map(Math.round).join(" ")}; ours ${boots.map(Math.round).join(" ")}; first step ${firstSteps.map(Math.round).join(" ")}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
