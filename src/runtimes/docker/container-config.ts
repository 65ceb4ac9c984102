/**
 * The container each step runs in: its image, the step's script for /bin/sh in the step's dir,
 * the workspace as the only host path, no network, no privileges, limits from the job.
 * With a network (egress), still `NetworkMode: none` (loopback only; under gVisor, its own
 * netstack's): the gateway's socket dir and the forwarder are bound in under /run/airlock, the
 * forwarder wraps the step's shell and serves the proxy ports on the container's loopback, and
 * keeps NET_BIND_SERVICE for port 53 there.
 */
import { posix } from "node:path";
import type { ResourceLimits } from "../../protocol/index.ts";
import { RESOLV_CONF, type SandboxNetwork, type StepRun } from "../runtime.ts";

/** Where the workspace appears inside every container. */
export const WORKSPACE_MOUNT = "/work";

/** Pids allowed when the job names no limit: enough for any build, too few for a fork bomb to hurt the host. */
export const DEFAULT_PIDS_LIMIT = 4096;

/**
 * Root in the container keeps only what it needs to work on workspace files it does not own
 * (the checkout belongs to the executor's user): read/write past modes, chown, chmod, keep setgid.
 * Everything else (raw sockets, mknod, setuid, kill of others, ptrace...) is dropped.
 */
export const CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"];

export interface ContainerOptions {
  image: string;
  run: StepRun;
  workspace: string;
  resources: ResourceLimits;
  labels: Record<string, string>;
  /** OCI runtime registered with dockerd ("runsc"); undefined for the daemon's default. */
  ociRuntime: string | undefined;
  network?: SandboxNetwork | undefined;
}

/** Where the egress socket's dir and the forwarder appear in a container. */
export const EGRESS_MOUNT = "/run/airlock";

function egressMounts(network: SandboxNetwork): object[] {
  const dir = posix.dirname(network.gatewaySocket);
  return [
    { Type: "bind", Source: dir, Target: `${EGRESS_MOUNT}/net`, ReadOnly: true, BindOptions: { Propagation: "rprivate" } },
    { Type: "bind", Source: network.forwarder, Target: `${EGRESS_MOUNT}/forwarder`, ReadOnly: true, BindOptions: { Propagation: "rprivate" } },
    { Type: "bind", Source: posix.join(dir, RESOLV_CONF), Target: "/etc/resolv.conf", ReadOnly: true, BindOptions: { Propagation: "rprivate" } },
  ];
}

export function containerConfig(options: ContainerOptions): object {
  const { run, resources, network } = options;
  const memory = resources.memoryBytes;
  const wrapper = network ? [`${EGRESS_MOUNT}/forwarder`, "--unix", `${EGRESS_MOUNT}/net/${posix.basename(network.gatewaySocket)}`, "--"] : [];
  return {
    Image: options.image,
    // The image's entrypoint is replaced: steps are scripts for /bin/sh, whatever the image wraps.
    Entrypoint: [...wrapper, "/bin/sh", "-c"],
    Cmd: [run.script],
    Env: Object.entries(run.env).map(([name, value]) => `${name}=${value}`),
    WorkingDir: posix.join(WORKSPACE_MOUNT, run.step.dir),
    Labels: { ...options.labels, "io.airlock.step": run.step.key },
    Hostname: "airlock",
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: false,
    Tty: false,
    NetworkDisabled: !network,
    HostConfig: {
      Mounts: [
        { Type: "bind", Source: options.workspace, Target: WORKSPACE_MOUNT, ReadOnly: false, BindOptions: { Propagation: "rprivate" } },
        ...(network ? egressMounts(network) : []),
      ],
      NetworkMode: "none",
      Privileged: false,
      SecurityOpt: ["no-new-privileges:true"],
      CapDrop: ["ALL"],
      CapAdd: network ? [...CAPABILITIES, "NET_BIND_SERVICE"] : CAPABILITIES,
      IpcMode: "private",
      PidsLimit: resources.pids ?? DEFAULT_PIDS_LIMIT,
      ...(memory ? { Memory: memory, MemorySwap: memory } : {}),
      ...(resources.cpus ? { NanoCpus: Math.round(resources.cpus * 1e9) } : {}),
      // Output goes to the attach stream only; nothing piles up in the daemon's log files.
      LogConfig: { Type: "none", Config: {} },
      AutoRemove: false,
      ...(options.ociRuntime ? { Runtime: options.ociRuntime } : {}),
    },
  };
}
