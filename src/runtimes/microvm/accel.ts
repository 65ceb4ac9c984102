/**
 * Which accelerator VMs use: KVM only when a probe VM actually boots with it (a host's /dev/kvm
 * may be a software nested kind that hangs stock kernels), else TCG. The probe boots the guest's
 * kernel and initramfs to a shell that prints a marker; its result is kept in memory and in
 * <data>/microvm/accel.json, valid for this host boot and this guest.
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Logger } from "../../common/logger.ts";
import type { Guest } from "./guest.ts";
import { qemuArgs, qemuCommand, type Accelerator } from "./vm.ts";

const MARKER = "AIRLOCK-ACCEL-OK";
/** A KVM boot takes well under a second; one that has not printed by then is hanging. */
const PROBE_TIMEOUT_MS = 15_000;

export interface AcceleratorChoice {
  accelerator: Accelerator;
  detail: string;
}

const cache = new Map<string, Promise<AcceleratorChoice>>();

async function bootId(): Promise<string> {
  return (await readFile("/proc/sys/kernel/random/boot_id", "utf8").catch(() => "")).trim();
}

/** Boots the guest to a shell with `accelerator`; resolves with the ms it took, or an error text. */
export function probeBoot(guest: Pick<Guest, "kernel" | "initrd">, accelerator: Accelerator, timeoutMs = PROBE_TIMEOUT_MS, memoryMiB = 256): Promise<{ ok: true; ms: number } | { ok: false; why: string }> {
  const args = qemuArgs(
    { guest, accelerator, memoryMiB, cpus: 1, disks: [], env: {}, extraCmdline: `rdinit=/bin/sh -- -c "echo ${MARKER};poweroff -f"` },
    { console: "stdio" },
  );
  const [command, argv] = qemuCommand(args);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let settled = false;
    const finish = (result: { ok: true; ms: number } | { ok: false; why: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, why: `no boot within ${timeoutMs / 1000} s` }), timeoutMs);
    const onData = (chunk: Buffer): void => {
      output = (output + chunk.toString("utf8")).slice(-2000);
      if (output.includes(MARKER)) finish({ ok: true, ms: Date.now() - started });
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (error) => finish({ ok: false, why: error.message }));
    child.on("close", (code, sig) => finish({ ok: false, why: `QEMU exited (${code ?? sig}) before the guest booted: ${(output.trim().split("\n").find((line) => line.includes("error")) ?? output.trim().split("\n").at(-1) ?? "").slice(0, 160)}` }));
  });
}

async function decide(dataDir: string, guest: Guest, logger: Logger): Promise<AcceleratorChoice> {
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { accelerator: "tcg", detail: "TCG (no usable /dev/kvm)" };
  }
  const file = join(dataDir, "microvm", "accel.json");
  const boot = await bootId();
  const saved = await readFile(file, "utf8")
    .then((text) => JSON.parse(text) as AcceleratorChoice & { bootId: string; guest: string })
    .catch(() => undefined);
  if (saved && saved.bootId === boot && saved.guest === guest.fingerprint) return { accelerator: saved.accelerator, detail: saved.detail };
  logger.info("probing KVM: booting a probe VM");
  const result = await probeBoot(guest, "kvm");
  const choice: AcceleratorChoice = result.ok
    ? { accelerator: "kvm", detail: `KVM (a probe VM booted in ${result.ms} ms)` }
    : { accelerator: "tcg", detail: `TCG (/dev/kvm exists, but a probe VM did not boot with it: ${result.why})` };
  logger.info("accelerator chosen", { accelerator: choice.accelerator, detail: choice.detail });
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify({ ...choice, bootId: boot, guest: guest.fingerprint }));
  return choice;
}

/** The accelerator for VMs of this guest on this host, probed once. */
export function chooseAccelerator(dataDir: string, guest: Guest, logger: Logger): Promise<AcceleratorChoice> {
  const key = `${dataDir}\0${guest.fingerprint}`;
  let choice = cache.get(key);
  if (!choice) {
    choice = decide(dataDir, guest, logger);
    cache.set(key, choice);
    choice.catch(() => cache.delete(key));
  }
  return choice;
}
