/**
 * The gvisor runtime (isolation `gvisor`): the docker runtime with every container handed to
 * gVisor's runsc, registered with dockerd under a name (default "runsc"). Steps then talk to
 * gVisor's user-space kernel, not the host's.
 */
import { coerceError, type Isolation } from "../../protocol/index.ts";
import type { ProbeResult } from "../runtime.ts";
import { DockerRuntime, type DockerRuntimeOptions } from "../docker/index.ts";

import { DEFAULT_GVISOR_RUNTIME } from "../docker/defaults.ts";

export interface GvisorRuntimeOptions extends DockerRuntimeOptions {
  /** The name runsc is registered under in dockerd's daemon.json. */
  ociRuntime?: string | undefined;
}

export class GvisorRuntime extends DockerRuntime {
  override readonly name: string = "gvisor";
  override readonly isolation: Isolation = "gvisor";
  private readonly runscName: string;

  constructor(options: GvisorRuntimeOptions) {
    super(options);
    this.runscName = options.ociRuntime ?? DEFAULT_GVISOR_RUNTIME;
  }

  protected override get ociRuntime(): string {
    return this.runscName;
  }

  override async probe(): Promise<ProbeResult> {
    const docker = await super.probe();
    if (!docker.usable) return docker;
    let runtimes: Record<string, { path?: string; runtimeArgs?: string[] }>;
    try {
      runtimes = (await this.client.info()).Runtimes ?? {};
    } catch (error) {
      return { usable: false, detail: coerceError(error).message };
    }
    const registered = runtimes[this.runscName];
    if (!registered) {
      const example = JSON.stringify({ runtimes: { [this.runscName]: { path: "/usr/bin/runsc", runtimeArgs: ["--network=none"] } } });
      return {
        usable: false,
        detail:
          `dockerd has no OCI runtime named "${this.runscName}" (it has: ${Object.keys(runtimes).join(", ") || "none"}). ` +
          `Install runsc (apt-get install runsc), add ${example} to /etc/docker/daemon.json and send dockerd SIGHUP ` +
          `(scripts/setup.d/10-docker.sh install does this), or name the registered runtime with --gvisor-runtime`,
      };
    }
    const args = registered.runtimeArgs ?? [];
    return { usable: true, detail: `${docker.detail}; runsc registered as "${this.runscName}" (${registered.path ?? "?"}${args.length ? ` ${args.join(" ")}` : ""})` };
  }
}
