/**
 * A closed world for egress tests: a network namespace the test makes, holding
 *   - a "public" host 192.0.2.10 (TEST-NET-1, named public.test; the executor is told to treat it
 *     as public with --egress-allow) serving HTTP on :80 and HTTPS on :443 (a CA made here),
 *   - private hosts 10.9.0.5 (internal.test) and 169.254.169.254 (cloud metadata) on :80,
 *   - a loopback service on 127.0.0.1:8081,
 *   - the executor (started by the test with `ip netns exec`),
 * and one veth link to the host's namespace (198.18.N.1 <-> 198.18.N.2, the benchmarking range)
 * so the executor reaches the coordinator on the host side. The namespace has no default route:
 * the only addresses it can send to are its own and 198.18.N.1, so even a broken gateway could not
 * send a packet off this machine. Names resolve from /etc/netns/<ns>/hosts (ip netns exec mounts
 * it over /etc/hosts); its resolv.conf names a server that does not exist there.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { tempDir } from "../helpers/cluster.ts";

export const PUBLIC = { name: "public.test", address: "192.0.2.10" } as const;
export const PRIVATE = { name: "internal.test", address: "10.9.0.5" } as const;
export const METADATA = "169.254.169.254";
export const LOOPBACK_PORT = 8081;

export interface EgressWorld {
  ns: string;
  /** Host side of the veth: the coordinator listens here. */
  hostAddress: string;
  dir: string;
  caPem: string;
  /** argv prefix that runs a command inside the world. */
  inWorld(argv: string[]): string[];
  close(): Promise<void>;
}

function run(argv: string[]): void {
  const result = spawnSync(argv[0] ?? "", argv.slice(1), { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`${argv.join(" ")} failed: ${result.stderr || result.error?.message || `exit ${result.status}`}`);
}

/** Why the world cannot be made here, or undefined. */
export function worldUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "egress world tests need root (ip netns)";
  if (spawnSync("ip", ["-V"]).status !== 0) return "iproute2 (ip) is not installed";
  if (spawnSync("openssl", ["version"]).status !== 0) return "openssl is not installed (the test's CA)";
  return undefined;
}

function makeCa(dir: string): { caPem: string; cert: string; key: string } {
  const ca = join(dir, "ca");
  run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=airlock egress test CA", "-keyout", `${ca}.key`, "-out", `${ca}.pem`]);
  const server = join(dir, "public");
  writeFileSync(`${server}.ext`, `subjectAltName=DNS:${PUBLIC.name},IP:${PUBLIC.address}\nbasicConstraints=CA:FALSE\n`);
  run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${PUBLIC.name}`, "-keyout", `${server}.key`, "-out", `${server}.csr`]);
  run(["openssl", "x509", "-req", "-in", `${server}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-days", "2", "-extfile", `${server}.ext`, "-out", `${server}.pem`]);
  return { caPem: spawnSync("cat", [`${ca}.pem`], { encoding: "utf8" }).stdout, cert: `${server}.pem`, key: `${server}.key` };
}

export async function createWorld(): Promise<EgressWorld> {
  const id = `${process.pid % 10000}${Math.floor(Math.random() * 100)}`;
  const ns = `airlock-eg-${id}`;
  const subnet = 1 + (Number(id) % 250);
  const hostAddress = `198.18.${subnet}.1`;
  const worldAddress = `198.18.${subnet}.2`;
  const dir = await tempDir("airlock-egress-world-");
  const vethHost = `aeg${id}h`.slice(0, 15);
  const vethWorld = `aeg${id}w`.slice(0, 15);
  let server: ChildProcess | undefined;
  const close = async (): Promise<void> => {
    if (server?.pid && server.exitCode === null) {
      server.kill("SIGKILL");
      await new Promise((resolve) => server?.once("exit", resolve));
    }
    spawnSync("ip", ["link", "del", vethHost]);
    spawnSync("ip", ["netns", "del", ns]);
    rmSync(join("/etc/netns", ns), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    run(["ip", "netns", "add", ns]);
    run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    // The hosts' addresses live on the world's loopback (no dummy devices in every kernel).
    for (const address of [PUBLIC.address, PRIVATE.address, METADATA]) run(["ip", "-n", ns, "addr", "add", `${address}/32`, "dev", "lo"]);
    run(["ip", "link", "add", vethHost, "type", "veth", "peer", "name", vethWorld]);
    run(["ip", "link", "set", vethWorld, "netns", ns]);
    run(["ip", "addr", "add", `${hostAddress}/30`, "dev", vethHost]);
    run(["ip", "link", "set", vethHost, "up"]);
    run(["ip", "-n", ns, "addr", "add", `${worldAddress}/30`, "dev", vethWorld]);
    run(["ip", "-n", ns, "link", "set", vethWorld, "up"]);
    mkdirSync(join("/etc/netns", ns), { recursive: true });
    writeFileSync(join("/etc/netns", ns, "hosts"), `127.0.0.1 localhost\n${PUBLIC.address} ${PUBLIC.name}\n${PRIVATE.address} ${PRIVATE.name}\n`);
    writeFileSync(join("/etc/netns", ns, "resolv.conf"), "nameserver 127.0.0.53\noptions timeout:1 attempts:1\n");
    const tls = makeCa(dir);
    const config = {
      http: [PUBLIC.address, PRIVATE.address, METADATA].map((address) => ({ address, port: 80 })).concat([{ address: "127.0.0.1", port: LOOPBACK_PORT }]),
      https: [{ address: PUBLIC.address, port: 443, cert: tls.cert, key: tls.key }],
    };
    writeFileSync(join(dir, "servers.json"), JSON.stringify(config));
    server = spawn("ip", ["netns", "exec", ns, process.execPath, join(import.meta.dirname, "world-server.ts"), join(dir, "servers.json")], { stdio: ["ignore", "pipe", "inherit"] });
    const lines = createInterface({ input: server.stdout as NodeJS.ReadableStream });
    await new Promise<void>((resolve, reject) => {
      server?.once("exit", (code) => reject(new Error(`world servers exited with ${code}`)));
      lines.on("line", (line) => line === "ready" && resolve());
    });
    // Not `ip netns exec`: it mounts a sysfs of the namespace's own, which hides the host's cgroup
    // hierarchy that bwrap's limits need. A private mount namespace shows the world's names.
    const inWorld = (argv: string[]): string[] => [
      "nsenter",
      `--net=/run/netns/${ns}`,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"',
      "world",
      join("/etc/netns", ns, "hosts"),
      join("/etc/netns", ns, "resolv.conf"),
      ...argv,
    ];
    return { ns, hostAddress, dir, caPem: tls.caPem, inWorld, close };
  } catch (error) {
    await close();
    throw error;
  }
}
