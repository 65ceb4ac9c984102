/**
 * The runtimes an executor can use, and how `--runtime auto` picks one: the strongest isolation
 * whose probe says it is usable here, every decision logged.
 */
import type { Logger } from "../common/logger.ts";
import { isolationRank, ValidationError } from "../protocol/index.ts";
import type { Isolation } from "../protocol/index.ts";
import { DEFAULT_DOCKER_HOST, DEFAULT_STEP_IMAGE } from "./docker/defaults.ts";
import type { MicroVmRuntimeOptions } from "./microvm/index.ts";
import type { Runtime, SandboxSpec } from "./runtime.ts";
import { ShellRuntime } from "./shell/index.ts";

export type * from "./runtime.ts";
export { processAlive, sandboxLabels } from "./labels.ts";
export { RESOLV_CONF, SANDBOX_PROXY, SANDBOX_WORKSPACE, stepScript } from "./runtime.ts";
export { DEFAULT_DOCKER_HOST, DEFAULT_GVISOR_RUNTIME, DEFAULT_STEP_IMAGE } from "./docker/defaults.ts";

export interface RuntimeHost {
  /** PATH of the executor's host, for runtimes that run host programs. */
  path: string;
  /** The executor's data dir, for caches (image root filesystems, kernels). */
  dataDir: string;
  /** OCI image layouts, archives, or directories holding layouts, for daemonless runtimes (bwrap, microvm). */
  images?: readonly string[] | undefined;
  logger: Logger;
  /** Docker Engine socket for the docker and gvisor runtimes, and bwrap's images (unix:///path or /path). */
  dockerHost?: string | undefined;
  /** Image for steps that name none (docker, gvisor, bwrap). */
  defaultImage?: string | undefined;
  /** Name runsc is registered under in dockerd (gvisor). */
  gvisorRuntime?: string | undefined;
  /** Pre-booted VMs the microvm runtime keeps waiting for jobs, and their maximum idle age. */
  warmVms?: number | undefined;
  warmVmMaxAgeMs?: number | undefined;
  /** How the warm pool makes its VMs (default restore). */
  warmVmRefill?: "restore" | "boot" | undefined;
}

/**
 * A runtime whose implementation (and its client libraries) is loaded on first use, so an
 * executor pays in memory only for the runtimes it probes or runs.
 */
function lazy(name: string, isolation: Isolation, load: () => Promise<Runtime>, traits: { enforcesDiskLimit?: boolean; readsWorkspaceAtCreate?: boolean } = {}): Runtime {
  let loaded: Promise<Runtime> | undefined;
  // The loaded runtime, for the synchronous calls (none before it has loaded).
  let ready: Runtime | undefined;
  const get = (): Promise<Runtime> => (loaded ??= load().then((runtime) => (ready = runtime)));
  return {
    name,
    isolation,
    ...traits,
    probe: async () => (await get()).probe(),
    createSandbox: async (spec: SandboxSpec, signal: AbortSignal) => (await get()).createSandbox(spec, signal),
    reapLeftovers: async () => (await (await get()).reapLeftovers?.()) ?? 0,
    start: async (host) => (await get()).start?.(host),
    // Nothing to end when the runtime was never loaded.
    close: async () => (loaded ? (await loaded).close?.() : undefined),
    warmPool: () => ready?.warmPool?.(),
  };
}

/** What the microvm runtime takes from the executor's host (also used by `airlock executor test-vm`). */
export function microvmOptions(host: RuntimeHost): MicroVmRuntimeOptions {
  return {
    dataDir: host.dataDir,
    path: host.path,
    images: host.images ?? [],
    dockerSocket: (host.dockerHost ?? DEFAULT_DOCKER_HOST).replace(/^unix:\/\//, ""),
    defaultImage: host.defaultImage ?? DEFAULT_STEP_IMAGE,
    logger: host.logger,
    warmVms: host.warmVms,
    warmVmMaxAgeMs: host.warmVmMaxAgeMs,
    warmVmRefill: host.warmVmRefill,
  };
}

/** Every runtime Airlock knows, strongest isolation first. */
export function allRuntimes(host: RuntimeHost): Runtime[] {
  const docker = { host: host.dockerHost, defaultImage: host.defaultImage, logger: host.logger };
  const runtimes: Runtime[] = [
    new ShellRuntime({ path: host.path }),
    lazy("docker", "container", async () => new (await import("./docker/index.ts")).DockerRuntime(docker)),
    lazy("gvisor", "gvisor", async () => new (await import("./gvisor/index.ts")).GvisorRuntime({ ...docker, ociRuntime: host.gvisorRuntime })),
    lazy("bwrap", "namespace", async () => {
      const { BwrapRuntime } = await import("./bwrap/index.ts");
      return new BwrapRuntime({ path: host.path, dataDir: host.dataDir, images: host.images ?? [], dockerHost: host.dockerHost, defaultImage: host.defaultImage, logger: host.logger });
    }),
    lazy("microvm", "vm", async () => new (await import("./microvm/index.ts")).MicroVmRuntime(microvmOptions(host)), { enforcesDiskLimit: true, readsWorkspaceAtCreate: true }),
  ];
  return runtimes.sort((a, b) => isolationRank(b.isolation) - isolationRank(a.isolation));
}

export const RUNTIME_NAMES = ["auto", "shell", "bwrap", "docker", "gvisor", "microvm"] as const;

/** Resolves `--runtime`: a name, or `auto` for the strongest usable runtime. */
export async function selectRuntime(choice: string, runtimes: Runtime[], logger: Logger): Promise<Runtime> {
  if (choice !== "auto") {
    const runtime = runtimes.find((candidate) => candidate.name === choice);
    if (!runtime) throw new ValidationError(`--runtime: unknown runtime "${choice}" (known: ${runtimes.map((r) => r.name).join(", ")}, auto)`);
    const probe = await runtime.probe();
    if (!probe.usable) throw new ValidationError(`runtime ${choice} cannot run here: ${probe.detail}`);
    return runtime;
  }
  for (const runtime of runtimes) {
    const probe = await runtime.probe();
    logger.info(probe.usable ? "runtime usable" : "runtime not usable", { runtime: runtime.name, isolation: runtime.isolation, detail: probe.detail });
    if (probe.usable) return runtime;
  }
  throw new ValidationError("no runtime can run here");
}
