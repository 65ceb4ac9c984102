/**
 * The container each step runs in: its image, the step's script for /bin/sh in the step's dir,
 * the workspace as the only host path, no network, no privileges, limits from the job.
 */
import { posix } from "node:path";
import type { ResourceLimits } from "../../protocol/index.ts";
import type { StepRun } from "../runtime.ts";

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
}

export function containerConfig(options: ContainerOptions): object {
  const { run, resources } = options;
  const memory = resources.memoryBytes;
  return {
    Image: options.image,
    // The image's entrypoint is replaced: steps are scripts for /bin/sh, whatever the image wraps.
    Entrypoint: ["/bin/sh", "-c"],
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
    NetworkDisabled: true,
    HostConfig: {
      Mounts: [{ Type: "bind", Source: options.workspace, Target: WORKSPACE_MOUNT, ReadOnly: false, BindOptions: { Propagation: "rprivate" } }],
      NetworkMode: "none",
      Privileged: false,
      SecurityOpt: ["no-new-privileges:true"],
      CapDrop: ["ALL"],
      CapAdd: CAPABILITIES,
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
