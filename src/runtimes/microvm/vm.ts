/**
 * One QEMU microvm process: its command line, its two sockets (the agent's virtio-serial port
 * and QMP, both served by us in a private 0700 directory, QEMU connecting as the client), its
 * serial console (a file, for the error message when a boot fails) and its end. A VM has a
 * network device only when its job has a network (net.ts).
 *
 * States: SPAWNED -> CONNECTED (QEMU dialled both sockets) -> READY (the agent said hello) ->
 * GONE (killed, or exited by itself). Restored from a snapshot (`snapshot`), QEMU loads the saved
 * guest instead of booting it and READY is when the agent has taken the host's clock and fresh
 * entropy ('N'); `save` writes such a snapshot. `boot` resolves at READY or rejects, having killed QEMU,
 * when QEMU exits, the agent does not answer in time, or the signal aborts. `kill` is idempotent
 * and resolves once the process has exited. No QEMU outlives its executor: it runs under
 * `setpriv --pdeathsig KILL`, and its environment carries the sandbox's labels for the reaper.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxError } from "../../protocol/index.ts";
import type { SandboxNetwork } from "../runtime.ts";
import { AgentChannel } from "./channel.ts";
import type { Guest } from "./guest.ts";
import { networkArgs } from "./net.ts";
import { QmpClient } from "./qmp.ts";

export type Accelerator = "kvm" | "tcg";

/**
 * The host's TSC frequency in kHz. Under TCG the guest reads the host's TSC, and the microvm
 * guest hangs calibrating it unless told the frequency (tsc_early_khz); told a wrong one, its
 * clock runs fast or slow (a `sleep 30` then takes 24 s). Without cpufreq, /proc/cpuinfo's
 * "cpu MHz" is the kernel's TSC frequency.
 */
export function hostTscKhz(): number {
  const text = (() => {
    try {
      return readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return "";
    }
  })();
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(text)?.[1]);
  return Number.isFinite(mhz) && mhz > 100 ? Math.round(mhz * 1000) : 2_000_000;
}

/**
 * The guest kernel's command line. The rest trims work a one-job VM does not need (mitigations
 * against other tenants of the VM, extra UARTs, waiting for entropy).
 */
export function kernelCmdline(accelerator: Accelerator): string {
  const clock = accelerator === "tcg" ? ` tsc_early_khz=${hostTscKhz()} tsc=reliable` : "";
  return `console=ttyS0 quiet panic=-1 reboot=t${clock} mitigations=off 8250.nr_uarts=1 random.trust_cpu=on`;
}

export const QEMU = "qemu-system-x86_64";
const SETPRIV = "/usr/bin/setpriv";

/** A disk attached at boot as virtio-blk; the guest finds it by its serial. */
export interface VmDisk {
  path: string;
  readOnly: boolean;
  serial: string;
}

export interface VmOptions {
  guest: Pick<Guest, "kernel" | "initrd">;
  accelerator: Accelerator;
  memoryMiB: number;
  cpus: number;
  /** Attached at boot (virtio-blk); images are hot-plugged later as SCSI disks. */
  disks: VmDisk[];
  /** Environment of the QEMU process: the sandbox's labels, for the reaper. */
  env: Record<string, string>;
  /** Extra kernel command line (the benchmark's bare boot and the KVM probe replace the agent with rdinit=). */
  extraCmdline?: string | undefined;
  /** A virtio-net device whose only way out is the gateway (the guest's initrd must then be networkInitrd's). */
  network?: SandboxNetwork | undefined;
  /**
   * Restore the guest from this snapshot (saved by `save` from a VM of the same options) instead
   * of booting it; the VM is ready once the agent has taken its fresh clock and entropy.
   */
  snapshot?: string | undefined;
}

/** A string as one shell word (QEMU runs exec: migration URIs with /bin/sh). */
function shellWord(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`;
}

function escapeOption(value: string): string {
  return value.replace(/,/g, ",,");
}

/** QEMU's arguments for a VM whose agent and QMP sockets are at `agentSocket` / `qmpSocket`. */
export function qemuArgs(options: VmOptions, sockets: { agent?: string; qmp?: string; console: string }): string[] {
  const args = [
    "-M", "microvm,x-option-roms=off,rtc=on",
    // Several vCPUs each get a host thread under TCG (MTTCG), not one thread taking turns.
    "-accel", options.accelerator === "tcg" && options.cpus > 1 ? "tcg,thread=multi" : options.accelerator,
    "-cpu", options.accelerator === "kvm" ? "host" : "max",
    "-m", `${options.memoryMiB}M`,
    "-smp", String(options.cpus),
    "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
    "-serial", sockets.console === "stdio" ? "stdio" : `file:${sockets.console}`,
    "-kernel", options.guest.kernel,
    "-initrd", options.guest.initrd,
    "-append", `${kernelCmdline(options.accelerator)}${options.network ? " airlock.net" : ""}${options.extraCmdline ? ` ${options.extraCmdline}` : ""}`,
  ];
  if (options.network) args.push(...networkArgs(options.network));
  if (sockets.agent) {
    // Two ports, not the default 31: the guest's driver sets up far fewer queues (about 25 ms under
    // TCG). Port 0 is kept for a console; the agent's is 1.
    args.push("-device", "virtio-serial-device,max_ports=2", "-chardev", `socket,id=agent,path=${escapeOption(sockets.agent)}`, "-device", "virtserialport,chardev=agent,name=airlock,nr=1");
  }
  if (sockets.qmp) args.push("-chardev", `socket,id=qmp,path=${escapeOption(sockets.qmp)}`, "-mon", "chardev=qmp,mode=control");
  if (sockets.qmp) args.push("-device", "virtio-scsi-device,id=scsi0");
  if (options.snapshot) args.push("-incoming", `exec:cat ${shellWord(options.snapshot)}`);
  for (const disk of options.disks) {
    args.push(
      "-blockdev", `driver=raw,node-name=${disk.serial},read-only=${disk.readOnly ? "on" : "off"},file.driver=file,file.filename=${escapeOption(disk.path)}`,
      "-device", `virtio-blk-device,drive=${disk.serial},serial=${disk.serial}`,
    );
  }
  return args;
}

/** The command to run QEMU with: under setpriv, so that it dies with its parent. */
export function qemuCommand(args: string[]): [string, string[]] {
  return existsSync(SETPRIV) ? [SETPRIV, ["--pdeathsig", "KILL", "--", QEMU, ...args]] : [QEMU, args];
}

/** Sends the agent a request whose one answer frame (of the same type) says "ok" or "error=...". */
async function answer(channel: AgentChannel, type: string, payload: Buffer | string): Promise<void> {
  let reply = "";
  await channel.request(type, payload, (frame) => {
    if (frame.type !== type) throw new SandboxError(`the guest agent sent "${frame.type}" in answer to "${type}"`);
    reply = frame.payload.toString("utf8");
    return true;
  });
  if (reply !== "ok") throw new SandboxError(`the guest agent could not ${type === "W" ? "finish booting" : "take its clock and entropy"}: ${reply.replace(/^error=/, "")}`);
}

/**
 * A restored guest's clock is the snapshot's, and its RNG state that of every VM restored from
 * the same file: the agent sets the wall clock and mixes in (and credits) 64 fresh bytes.
 */
async function freshen(channel: AgentChannel): Promise<void> {
  const now = Date.now();
  const clock = `${Math.floor(now / 1000)} ${(now % 1000) * 1_000_000}\n`;
  await answer(channel, "N", Buffer.concat([Buffer.from(clock), randomBytes(64)]));
}

function acceptOne(server: Server): Promise<Socket> {
  return new Promise((resolve) => server.once("connection", (socket) => {
    server.close();
    resolve(socket);
  }));
}

export class Vm {
  readonly channel: AgentChannel;
  readonly qmp: QmpClient;
  readonly process: ChildProcess;
  readonly bootMs: number;
  private readonly dir: string;
  private readonly exited: Promise<void>;
  private killing: Promise<void> | undefined;

  private constructor(parts: { channel: AgentChannel; qmp: QmpClient; process: ChildProcess; dir: string; exited: Promise<void>; bootMs: number }) {
    this.channel = parts.channel;
    this.qmp = parts.qmp;
    this.process = parts.process;
    this.dir = parts.dir;
    this.exited = parts.exited;
    this.bootMs = parts.bootMs;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null && !this.channel.broken;
  }

  static async boot(options: VmOptions, signal: AbortSignal, timeoutMs: number): Promise<Vm> {
    const started = Date.now();
    const dir = await mkdtemp(join(tmpdir(), "airlock-vm-"));
    const sockets = { agent: join(dir, "agent.sock"), qmp: join(dir, "qmp.sock"), console: join(dir, "serial.log") };
    const agentServer = createServer();
    const qmpServer = createServer();
    await Promise.all([new Promise<void>((resolve) => agentServer.listen(sockets.agent, resolve)), new Promise<void>((resolve) => qmpServer.listen(sockets.qmp, resolve))]);
    const agentSocket = acceptOne(agentServer);
    const qmpSocket = acceptOne(qmpServer);
    const [command, args] = qemuCommand(qemuArgs(options, sockets));
    const child = spawn(command, args, { env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-4000)));
    child.stderr.on("data", (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-4000)));
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    const cleanup = async (): Promise<void> => {
      agentServer.close();
      qmpServer.close();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      await rm(dir, { recursive: true, force: true });
    };
    const why = async (what: string): Promise<SandboxError> => {
      const consoleText = await readFile(sockets.console, "utf8").catch(() => "");
      const tail = `${output}\n${consoleText}`.trim().split("\n").slice(-12).join("\n");
      return new SandboxError(`${what}${tail ? `; QEMU said:\n${tail}` : ""}`);
    };
    let timer: NodeJS.Timeout | undefined;
    const failure = new Promise<never>((_resolve, reject) => {
      child.once("error", (error) => reject(new SandboxError(`could not start ${QEMU}: ${error.message}`)));
      child.once("close", (code, sig) => void why(`QEMU exited during boot (${code ?? sig})`).then(reject));
      timer = setTimeout(() => void why(`the VM did not boot within ${Math.round(timeoutMs / 1000)} s (accelerator ${options.accelerator})`).then(reject), timeoutMs);
      signal.addEventListener("abort", () => reject(new SandboxError("VM boot stopped")), { once: true });
    });
    try {
      const [agent, control] = await Promise.race([Promise.all([agentSocket, qmpSocket]), failure]);
      const channel = new AgentChannel(agent);
      const qmp = new QmpClient(control);
      const up = options.snapshot ? qmp.start().then(() => qmp.running()).then(() => freshen(channel)) : Promise.all([channel.ready(), qmp.start()]);
      await Promise.race([up, failure]).catch(async (error: unknown) => {
        // A socket closing first means QEMU is exiting: its own message says why.
        throw await Promise.race([failure.catch((why: unknown) => why), new Promise((resolve) => setTimeout(() => resolve(error), 2000))]);
      });
      failure.catch(() => undefined);
      return new Vm({ channel, qmp, process: child, dir, exited, bootMs: Date.now() - started });
    } catch (error) {
      failure.catch(() => undefined);
      await cleanup();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** What the guest printed on its serial console so far (boot stages with airlock.debug). */
  async consoleText(): Promise<string> {
    return readFile(join(this.dir, "serial.log"), "utf8").catch(() => "");
  }

  /**
   * Saves the guest to `file` (a QEMU migration stream), once its agent has finished booting (its
   * drivers loaded, nothing running). The VM is paused afterwards: the caller kills it.
   */
  async save(file: string): Promise<void> {
    await this.agentRequest("W");
    // The default bandwidth cap (128 MiB/s) is for live migration over a network, not a local file.
    await this.qmp.execute("migrate-set-parameters", { "max-bandwidth": 64 * 1024 ** 3 });
    await this.qmp.execute("migrate", { uri: `exec:cat > ${shellWord(file)}` });
    for (;;) {
      const info = (await this.qmp.execute("query-migrate")) as { status?: string; "error-desc"?: string };
      if (info.status === "completed") return;
      if (info.status === "failed" || info.status === "cancelled") throw new SandboxError(`could not save the VM: ${info["error-desc"] ?? info.status}`);
      if (!this.alive) throw new SandboxError("the VM died while being saved");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private async agentRequest(type: string, payload: Buffer | string = ""): Promise<void> {
    await answer(this.channel, type, payload);
  }

  /** Hot-plugs a read-only disk as SCSI lun `lun`. */
  async attachReadOnly(path: string, lun: number): Promise<void> {
    await this.qmp.execute("blockdev-add", { driver: "raw", "node-name": `image${lun}`, "read-only": true, file: { driver: "file", filename: path, "read-only": true } });
    await this.qmp.execute("device_add", { driver: "scsi-hd", bus: "scsi0.0", "scsi-id": 0, lun, drive: `image${lun}`, id: `image${lun}` });
  }

  kill(): Promise<void> {
    this.killing ??= (async () => {
      this.channel.close();
      this.qmp.close();
      if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill("SIGKILL");
      await this.exited;
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.killing;
  }
}
