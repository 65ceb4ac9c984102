/**
 * The guest every microVM boots: a kernel (Debian's linux-image by default) and a small
 * initramfs holding the agent (agent/agent.c, compiled static here), busybox-static (the steps'
 * `tar` for the workspace's way back, and `/bin/sh` for the bare-boot benchmark) and the kernel
 * modules the VM needs, loaded by the agent in dependency order. Beside it, net.cpio: the network
 * driver's modules, appended (with the egress forwarder, see net.ts) to the initramfs of VMs
 * whose job has a network, so that VMs without one unpack and load nothing of it.
 *
 * `installGuest` builds it into <data>/microvm/guest/ and records it in guest.json; it does
 * nothing when the inputs (kernel, agent source, busybox, module list) did not change. When the
 * kernel's compressed image holds an ELF with a PVH entry note, that ELF is booted directly: the
 * guest then skips decompressing itself, which under TCG is most of a boot.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../../common/logger.ts";
import { compileStatic } from "../../common/compile.ts";
import { coerceError, UnavailableError } from "../../protocol/index.ts";
import { cpioArchive, type CpioEntry } from "./cpio.ts";
import { decompressKernel, elfHasInterpreter, hasPvhEntry, kernelVersion } from "./kernel-image.ts";

/**
 * The modules the agent loads, in three lists (their dependencies added from modules.dep): the
 * port's, before its hello; then, in a child it starts right after, the boot disks' and the
 * image disks' (SCSI, for disks hot-plugged later). A module in two lists is loaded once.
 */
export const PORT_MODULES = ["virtio_mmio", "virtio_console"];
export const DISK_MODULES = ["crc32c_generic", "ext4", "overlay", "virtio_blk"];
export const LATER_MODULES = ["virtio_scsi", "sd_mod"];
/** Loaded last, only with airlock.net on the kernel command line; shipped in net.cpio. */
export const NET_MODULES = ["virtio_net"];
const FORMAT = "airlock-guest-7";
const BUSYBOX = "/bin/busybox";

export interface Guest {
  /** What QEMU's -kernel gets: the PVH ELF when there is one, else the compressed image. */
  kernel: string;
  initrd: string;
  /** The cpio archive appended to `initrd` for VMs with a network: the network driver's modules. */
  netModules: string;
  kernelVersion: string;
  bootFormat: "pvh-elf" | "bzimage";
  /** The kernel image it was built from. */
  source: string;
  fingerprint: string;
  modules: string[];
  agentCompiler: string;
  builtAt: string;
}

export function guestDir(dataDir: string): string {
  return join(dataDir, "microvm", "guest");
}

export async function loadGuest(dataDir: string): Promise<Guest> {
  const file = join(guestDir(dataDir), "guest.json");
  let guest: Guest;
  try {
    guest = JSON.parse(await readFile(file, "utf8")) as Guest;
  } catch {
    throw new UnavailableError(`no microVM guest in ${guestDir(dataDir)}: run \`airlock executor install microvm --data ${dataDir}\``);
  }
  for (const path of [guest.kernel, guest.initrd, guest.netModules]) {
    // A guest.json older than this code has no netModules: install again.
    if (!path || !existsSync(path)) throw new UnavailableError(`the microVM guest's ${path || "network driver archive"} is missing: run \`airlock executor install microvm --data ${dataDir}\` again`);
  }
  return guest;
}

/** The newest /boot/vmlinuz-*, the kernel Debian's linux-image-amd64 installs. */
export async function defaultKernel(): Promise<string> {
  const names = (await readdir("/boot").catch(() => [] as string[])).filter((name) => name.startsWith("vmlinuz-"));
  names.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const newest = names.at(-1);
  if (!newest) throw new UnavailableError("no kernel in /boot (apt-get install linux-image-amd64, or pass --kernel PATH)");
  return join("/boot", newest);
}

/** The agent's C sources (agent/*.c and agent.h), shipped beside this module. */
export async function agentSources(): Promise<string[]> {
  const dir = fileURLToPath(new URL("./agent/", import.meta.url));
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => /\.[ch]$/.test(name)).sort();
  if (!names.includes("agent.c")) throw new UnavailableError(`the agent's sources are missing from ${dir}`);
  return names.map((name) => join(dir, name));
}

async function moduleOrder(modulesDir: string, wanted: readonly string[], already: readonly string[] = []): Promise<string[]> {
  const depFile = join(modulesDir, "modules.dep");
  const text = await readFile(depFile, "utf8").catch((error: unknown) => {
    throw new UnavailableError(`cannot read ${depFile} (is the kernel's linux-image package installed?): ${coerceError(error).message}`);
  });
  const byName = new Map<string, { path: string; deps: string[] }>();
  const nameOf = (path: string): string => basename(path).replace(/\.ko(\.xz|\.zst|\.gz)?$/, "").replace(/-/g, "_");
  for (const line of text.split("\n")) {
    const [path, deps] = line.split(":");
    if (!path || deps === undefined) continue;
    byName.set(nameOf(path), { path, deps: deps.trim().split(/\s+/).filter(Boolean) });
  }
  // A kernel with the drivers built in (modules.builtin) needs no module for them: it boots faster.
  const builtin = new Set(
    (await readFile(join(modulesDir, "modules.builtin"), "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean)
      .map(nameOf),
  );
  const order: string[] = [];
  const visit = (name: string): void => {
    const entry = byName.get(name);
    if (!entry && builtin.has(name)) return;
    if (!entry) throw new UnavailableError(`kernel module ${name} is neither in ${depFile} nor built in; this kernel cannot run the microVM guest`);
    if (order.includes(entry.path) || already.includes(entry.path)) return;
    for (const dep of entry.deps) visit(nameOf(dep));
    if (!order.includes(entry.path)) order.push(entry.path);
  };
  for (const name of wanted) visit(name);
  return order;
}

const SIGNATURE_MAGIC = Buffer.from("~Module signature appended~\n");

/**
 * A module without its appended signature: checking one costs a hash of the whole module, slow
 * under TCG, and the kernel loads unsigned modules (unless built with MODULE_SIG_FORCE: then the
 * signed original is kept; see `installGuest`).
 */
export function withoutSignature(module: Buffer): Buffer {
  if (module.length < SIGNATURE_MAGIC.length + 12 || !module.subarray(module.length - SIGNATURE_MAGIC.length).equals(SIGNATURE_MAGIC)) return module;
  const infoEnd = module.length - SIGNATURE_MAGIC.length;
  const signatureLength = module.readUInt32BE(infoEnd - 4);
  const end = infoEnd - 12 - signatureLength;
  return end > 0 ? module.subarray(0, end) : module;
}

async function moduleBytes(path: string): Promise<Buffer> {
  if (!/\.(xz|zst|gz)$/.test(path)) return readFile(path);
  const tool = path.endsWith(".xz") ? "xz" : path.endsWith(".zst") ? "zstd" : "gzip";
  const result = spawnSync(tool, ["-dc", path], { maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new UnavailableError(`could not decompress ${path} with ${tool}`);
  return result.stdout;
}

async function fingerprintOf(kernel: string, agent: string[]): Promise<string> {
  const hash = createHash("sha256").update(FORMAT).update([...PORT_MODULES, "|", ...DISK_MODULES, "|", ...LATER_MODULES, "|", ...NET_MODULES].join(","));
  const info = await stat(kernel);
  hash.update(`${kernel}\0${info.size}\0${info.mtimeMs}\0`);
  for (const file of agent) hash.update(await readFile(file));
  hash.update(await readFile(BUSYBOX).catch(() => Buffer.alloc(0)));
  return hash.digest("hex").slice(0, 16);
}

export interface InstallOptions {
  dataDir: string;
  /** A kernel image; default: the newest /boot/vmlinuz-*. */
  kernel?: string | undefined;
  logger: Logger;
  /** Rebuild even when nothing changed. */
  force?: boolean;
}

export async function installGuest(options: InstallOptions): Promise<{ guest: Guest; built: boolean }> {
  const kernel = options.kernel ?? (await defaultKernel());
  if (!existsSync(kernel)) throw new UnavailableError(`kernel ${kernel} does not exist`);
  const agent = await agentSources();
  if (!existsSync(BUSYBOX)) throw new UnavailableError(`${BUSYBOX} is missing (apt-get install busybox-static)`);
  const busybox = await readFile(BUSYBOX);
  if (elfHasInterpreter(busybox)) throw new UnavailableError(`${BUSYBOX} is linked dynamically; the guest needs busybox-static (apt-get install busybox-static)`);
  const fingerprint = await fingerprintOf(kernel, agent);
  const root = guestDir(options.dataDir);
  if (!options.force) {
    const current = await loadGuest(options.dataDir).catch(() => undefined);
    if (current?.fingerprint === fingerprint) return { guest: current, built: false };
  }
  const image = await readFile(kernel);
  const version = kernelVersion(image) ?? basename(kernel).replace(/^vmlinuz-/, "");
  const modulesDir = join("/lib/modules", version);
  const portOrder = await moduleOrder(modulesDir, PORT_MODULES);
  const diskOrder = await moduleOrder(modulesDir, DISK_MODULES);
  const laterOrder = await moduleOrder(modulesDir, LATER_MODULES, [...portOrder, ...diskOrder]);
  const netOrder = await moduleOrder(modulesDir, NET_MODULES, [...portOrder, ...diskOrder, ...laterOrder]);
  const config = await readFile(join("/boot", `config-${version}`), "utf8").catch(() => "");
  const forceSigned = /^CONFIG_MODULE_SIG_FORCE=y/m.test(config);
  const dir = join(root, fingerprint);
  const temp = `${dir}.tmp-${process.pid}`;
  await rm(temp, { recursive: true, force: true });
  await mkdir(temp, { recursive: true });
  const compiler = await compileStatic("the guest agent", agent, join(temp, "agent"));
  const entries: CpioEntry[] = [
    { name: "bin", mode: 0o40755 },
    { name: "dev", mode: 0o40755 },
    { name: "dev/console", mode: 0o20600, rdev: { major: 5, minor: 1 } },
    { name: "modules", mode: 0o40755 },
    { name: "proc", mode: 0o40755 },
    { name: "sys", mode: 0o40755 },
    { name: "init", mode: 0o100755, data: await readFile(join(temp, "agent")) },
    { name: "bin/busybox", mode: 0o100755, data: busybox },
    { name: "bin/sh", mode: 0o120777, data: Buffer.from("busybox") },
    { name: "bin/poweroff", mode: 0o120777, data: Buffer.from("busybox") },
  ];
  const netEntries: CpioEntry[] = [];
  const names: string[] = [];
  const lists = [["modules.port", portOrder, entries], ["modules.disk", diskOrder, entries], ["modules.later", laterOrder, entries], ["modules.net", netOrder, netEntries]] as const;
  for (const [list, order, archive] of lists) {
    const listed: string[] = [];
    for (const path of order) {
      const name = basename(path).replace(/\.ko(\.xz|\.zst|\.gz)?$/, ".ko");
      listed.push(name);
      if (names.includes(name)) continue;
      names.push(name);
      const bytes = await moduleBytes(join(modulesDir, path));
      archive.push({ name: `modules/${name}`, mode: 0o100644, data: forceSigned ? bytes : withoutSignature(bytes) });
    }
    archive.push({ name: list, mode: 0o100644, data: Buffer.from(`${listed.join("\n")}\n`) });
  }
  await writeFile(join(temp, "initrd.cpio"), cpioArchive(entries));
  await writeFile(join(temp, "net.cpio"), cpioArchive(netEntries));
  let bootFormat: Guest["bootFormat"] = "bzimage";
  let kernelFile = join(dir, "vmlinuz");
  const elf = decompressKernel(image);
  if (elf && hasPvhEntry(elf)) {
    await writeFile(join(temp, "vmlinux"), elf);
    bootFormat = "pvh-elf";
    kernelFile = join(dir, "vmlinux");
  } else {
    await writeFile(join(temp, "vmlinuz"), image);
    options.logger.info("the kernel has no PVH entry point; booting its compressed image (slower under TCG)", { kernel });
  }
  await rm(join(temp, "agent"));
  await rm(dir, { recursive: true, force: true });
  await rename(temp, dir);
  const guest: Guest = {
    kernel: kernelFile,
    initrd: join(dir, "initrd.cpio"),
    netModules: join(dir, "net.cpio"),
    kernelVersion: version,
    bootFormat,
    source: kernel,
    fingerprint,
    modules: names,
    agentCompiler: compiler,
    builtAt: new Date().toISOString(),
  };
  await writeFile(join(root, "guest.json.tmp"), `${JSON.stringify(guest, null, 2)}\n`);
  await rename(join(root, "guest.json.tmp"), join(root, "guest.json"));
  for (const old of await readdir(root)) {
    if (old !== fingerprint && old !== "guest.json" && /^[0-9a-f]{16}(\.tmp-\d+)?$/.test(old)) await rm(join(root, old), { recursive: true, force: true });
  }
  return { guest, built: true };
}
