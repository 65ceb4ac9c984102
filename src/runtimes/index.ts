/**
 * The runtimes an executor can use, and how `--runtime auto` picks one: the strongest isolation
 * whose probe says it is usable here, every decision logged.
 */
import type { Logger } from "../common/logger.ts";
import { isolationRank, ValidationError } from "../protocol/index.ts";
import { BwrapRuntime } from "./bwrap/index.ts";
import type { Runtime } from "./runtime.ts";
import { DockerRuntime } from "./docker/index.ts";
import { GvisorRuntime } from "./gvisor/index.ts";
import { ShellRuntime } from "./shell/index.ts";

export type * from "./runtime.ts";
export { processAlive, sandboxLabels } from "./labels.ts";
export { stepScript } from "./runtime.ts";
export { DEFAULT_DOCKER_HOST, DEFAULT_STEP_IMAGE } from "./docker/index.ts";
export { DEFAULT_GVISOR_RUNTIME } from "./gvisor/index.ts";

export interface RuntimeHost {
  /** PATH of the executor's host, for runtimes that run host programs. */
  path: string;
  /** The executor's data dir, for caches (image root filesystems, kernels). */
  dataDir: string;
  /** OCI image layouts, archives, or directories holding layouts, for daemonless runtimes (bwrap). */
  images?: readonly string[] | undefined;
  logger: Logger;
  /** Docker Engine socket for the docker and gvisor runtimes, and bwrap's images (unix:///path or /path). */
  dockerHost?: string | undefined;
  /** Image for steps that name none (docker, gvisor, bwrap). */
  defaultImage?: string | undefined;
  /** Name runsc is registered under in dockerd (gvisor). */
  gvisorRuntime?: string | undefined;
}

/** Every runtime Airlock knows, strongest isolation first. */
export function allRuntimes(host: RuntimeHost): Runtime[] {
  const docker = { host: host.dockerHost, defaultImage: host.defaultImage, logger: host.logger };
  const runtimes: Runtime[] = [
    new ShellRuntime({ path: host.path }),
    new DockerRuntime(docker),
    new GvisorRuntime({ ...docker, ociRuntime: host.gvisorRuntime }),
    new BwrapRuntime({ path: host.path, dataDir: host.dataDir, images: host.images ?? [], dockerHost: host.dockerHost, defaultImage: host.defaultImage, logger: host.logger }),
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
