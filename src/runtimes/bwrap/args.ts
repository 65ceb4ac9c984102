/**
 * The bwrap command line for one step: new user, pid, network, ipc, uts and cgroup namespaces
 * (and a mount namespace, always); no capabilities; the image's
 * root filesystem read-only; a fresh /proc, read-only as a whole (root in the sandbox maps to the
 * executor's user, who owns /proc/sys: the mount flag is what stops writes there); a minimal
 * /dev; a private /tmp; the workspace at /work, the only writable host path.
 * The network namespace has loopback only: nothing of the host, its loopback included. With a
 * network (egress), the gateway's unix socket and the forwarder are bound in at /dev/airlock and
 * the forwarder wraps the step's shell, serving the proxy ports on the sandbox's own loopback;
 * it keeps CAP_NET_BIND_SERVICE (in the sandbox's own user and network namespaces only) to bind
 * port 53 there.
 * Every option that names a host path (the image's rootfs, the workspace, the egress socket) goes
 * to bwrap through `--args FD`, never its argv: pid 1 of the sandbox is bwrap itself, and its
 * /proc/1/cmdline is readable by the step. bwrap closes that descriptor once read. Only the
 * step's own command stays in argv.
 * No `--disable-userns`: the seccomp filter already refuses every way to make a namespace
 * (unshare, setns, clone with namespace flags, clone3), and the flag costs bwrap a nested user
 * namespace per step.
 */

/** Where the workspace appears inside the sandbox. */
export const WORKSPACE_MOUNT = "/work";
export const SANDBOX_HOSTNAME = "airlock";

/** File descriptors bwrap gets beyond stdio (see launcher.ts). */
export const FD = { status: 3, seccomp: 5, args: 6 } as const;

/** bwrap's options (passed through `--args`, NUL-separated) and the command it runs. */
export interface BwrapInvocation {
  options: string[];
  command: string[];
}

/** The whole argv, for callers that start bwrap directly (benchmarks, tests): host paths show. */
export function flatArgv(invocation: BwrapInvocation): string[] {
  return [...invocation.options, "--", ...invocation.command];
}

export interface StepMounts {
  rootfs: string;
  workspace: string;
  /** Working directory inside the sandbox. */
  cwd: string;
  /** Size of the private /tmp (tmpfs pages also count against the memory limit). */
  tmpBytes?: number | undefined;
  network?: StepNetwork | undefined;
}

export interface StepNetwork {
  gatewaySocket: string;
  forwarder: string;
  /** A host file to show as /etc/resolv.conf (only when the image has one to mount over). */
  resolvConf?: string | undefined;
}

/** Where the egress socket and forwarder appear inside the sandbox. */
export const EGRESS_MOUNT = "/dev/airlock";

export function namespaceArgs(network = false): string[] {
  return [
    "--unshare-user",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup",
    "--cap-drop",
    "ALL",
    ...(network ? ["--cap-add", "CAP_NET_BIND_SERVICE"] : []),
    "--die-with-parent",
    "--new-session",
    "--hostname",
    SANDBOX_HOSTNAME,
  ];
}

export function bwrapArgs(mounts: StepMounts, script: string): BwrapInvocation {
  const network = mounts.network;
  const egress = network
    ? [
        "--ro-bind",
        network.gatewaySocket,
        `${EGRESS_MOUNT}/gateway.sock`,
        "--ro-bind",
        network.forwarder,
        `${EGRESS_MOUNT}/forwarder`,
        ...(network.resolvConf ? ["--ro-bind", network.resolvConf, "/etc/resolv.conf"] : []),
      ]
    : [];
  const wrapper = network ? [`${EGRESS_MOUNT}/forwarder`, "--unix", `${EGRESS_MOUNT}/gateway.sock`, "--"] : [];
  const options = [
    ...namespaceArgs(network !== undefined),
    "--ro-bind",
    mounts.rootfs,
    "/",
    "--proc",
    "/proc",
    "--remount-ro",
    "/proc",
    "--dev",
    "/dev",
    ...(mounts.tmpBytes ? ["--size", String(mounts.tmpBytes)] : []),
    "--perms",
    "1777",
    "--tmpfs",
    "/tmp",
    "--bind",
    mounts.workspace,
    WORKSPACE_MOUNT,
    ...egress,
    "--chdir",
    mounts.cwd,
    // The sandbox's pid (to kill it) and its exit code, as JSON lines.
    "--json-status-fd",
    String(FD.status),
    "--seccomp",
    String(FD.seccomp),
  ];
  return { options, command: [...wrapper, "/bin/sh", "-c", script] };
}

/** The environment a step sees: defaults, then the image's, then the step's own. */
export function stepEnvironment(imageEnv: readonly string[], stepEnv: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/tmp" };
  for (const pair of imageEnv) {
    const equals = pair.indexOf("=");
    if (equals > 0) env[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return { ...env, ...stepEnv };
}
