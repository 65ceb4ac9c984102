/**
 * A microVM's network, for a job with one (SandboxSpec.network): one virtio-net device on QEMU's
 * user networking with `restrict=on` (the guest reaches neither the host nor anything else; no
 * DNS, no IPv6) and a single guestfwd rule: a connection from the guest to GATEWAY:3128 starts
 * `<forwarder> --stdio <gateway socket>` on the host with the connection as its stdio. QEMU
 * starts one such process per connection (libslirp's fork_exec), so connections run concurrently.
 *
 * In the guest, the agent configures lo and eth0 (10.0.2.15/24, slirp's default; no default
 * route) and runs each step under `forwarder --tcp GATEWAY:3128 -- /bin/sh -c ...`, which serves
 * the step's proxy and DNS ports on 127.0.0.1 and tags each connection for the gateway. That
 * forwarder is the host's binary (static), appended with the network driver's modules to the
 * guest's initramfs: `networkInitrd` builds that initramfs once per guest and forwarder (callers
 * in this process share one build; across processes each writes a temporary file and renames it
 * into place, the same bytes either way).
 */
import { createHash } from "node:crypto";
import { readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { SandboxError, UnavailableError } from "../../protocol/index.ts";
import type { SandboxNetwork } from "../runtime.ts";
import { cpioArchive } from "./cpio.ts";
import type { Guest } from "./guest.ts";
import { elfHasInterpreter } from "./kernel-image.ts";

/** The guestfwd address the guest's forwarder connects to. */
export const GATEWAY = "10.0.2.100:3128";
/** Where the forwarder is in the guest's initramfs (the agent runs it from there). */
const GUEST_FORWARDER = "bin/airlock-forwarder";

/** A word for g_shell_parse_argv, which splits the guestfwd command. */
function shellWord(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`;
}

/** QEMU's arguments for the network device (and the kernel command line's `airlock.net`). */
export function networkArgs(network: SandboxNetwork): string[] {
  const [host, port] = GATEWAY.split(":");
  const command = [network.forwarder, "--stdio", network.gatewaySocket].map(shellWord).join(" ");
  // QEMU's option syntax: a comma in a value is written twice.
  const netdev = `user,id=net0,restrict=on,ipv6=off,guestfwd=tcp:${host}:${port}-cmd:${command.replace(/,/g, ",,")}`;
  return ["-netdev", netdev, "-device", "virtio-net-device,netdev=net0"];
}

const built = new Map<string, Promise<string>>();

async function build(guest: Pick<Guest, "initrd" | "netModules">, forwarder: Buffer): Promise<string> {
  const digest = createHash("sha256").update(forwarder).digest("hex").slice(0, 16);
  const dir = dirname(guest.initrd);
  const path = join(dir, `initrd-net-${digest}.cpio`);
  if ((await stat(path).catch(() => undefined))?.isFile()) return path;
  const [base, modules] = await Promise.all([readFile(guest.initrd), readFile(guest.netModules)]);
  // The kernel unpacks concatenated newc archives in order: the base, the driver, the forwarder.
  const temp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await writeFile(temp, Buffer.concat([base, modules, cpioArchive([{ name: GUEST_FORWARDER, mode: 0o100755, data: forwarder }])]));
  await rename(temp, path);
  // Those of forwarders built before: removed once no VM could still be about to boot them.
  const hourAgo = Date.now() - 3_600_000;
  for (const name of await readdir(dir)) {
    if (!name.startsWith("initrd-net-") || join(dir, name) === path) continue;
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (info && info.mtimeMs < hourAgo) await rm(join(dir, name), { force: true });
  }
  return path;
}

/** The initramfs of a VM with a network: the guest's, the network driver, and `forwarder` (static). */
export async function networkInitrd(guest: Pick<Guest, "initrd" | "netModules" | "fingerprint">, forwarderPath: string): Promise<string> {
  const info = await stat(forwarderPath).catch(() => undefined);
  if (!info?.isFile()) throw new UnavailableError(`the egress forwarder ${forwarderPath} does not exist`);
  const key = `${guest.fingerprint}\0${forwarderPath}\0${info.size}\0${info.mtimeMs}`;
  let pending = built.get(key);
  if (!pending) {
    pending = readFile(forwarderPath).then((bytes) => {
      if (bytes.readUInt32BE(0) !== 0x7f454c46 || elfHasInterpreter(bytes)) throw new SandboxError(`the egress forwarder ${forwarderPath} is not a static executable; the VM cannot run it`);
      return build(guest, bytes);
    });
    built.set(key, pending);
    pending.catch(() => built.delete(key));
  }
  return pending;
}
