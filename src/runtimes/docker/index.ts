/**
 * The docker runtime (isolation `container`): every step in its own container from the step's
 * image, made through the Docker Engine API on its unix socket. The gvisor runtime is this same
 * runtime with the containers handed to the runsc OCI runtime (see ../gvisor).
 */
import { stat } from "node:fs/promises";
import { hostname } from "node:os";
import type { Logger } from "../../common/logger.ts";
import { coerceError, SandboxError, type Isolation } from "../../protocol/index.ts";
import { isLeftover, LABEL } from "../labels.ts";
import type { ProbeResult, Runtime, Sandbox, SandboxSpec } from "../runtime.ts";
import { DockerClient, socketPathOf } from "./client.ts";
import { DockerSandbox } from "./sandbox.ts";

import { DEFAULT_DOCKER_HOST, DEFAULT_STEP_IMAGE } from "./defaults.ts";

export interface DockerRuntimeOptions {
  /** unix:///path/to/docker.sock, or the path itself. */
  host?: string | undefined;
  defaultImage?: string | undefined;
  logger: Logger;
}

export class DockerRuntime implements Runtime {
  readonly name: string = "docker";
  readonly isolation: Isolation = "container";
  protected readonly client: DockerClient;
  protected readonly logger: Logger;
  private readonly defaultImage: string;

  constructor(options: DockerRuntimeOptions) {
    this.client = new DockerClient({ socketPath: socketPathOf(options.host ?? DEFAULT_DOCKER_HOST) });
    this.defaultImage = options.defaultImage ?? DEFAULT_STEP_IMAGE;
    this.logger = options.logger;
  }

  /** The OCI runtime containers are handed to; undefined means dockerd's default (runc). */
  protected get ociRuntime(): string | undefined {
    return undefined;
  }

  async probe(): Promise<ProbeResult> {
    try {
      const version = await this.client.version();
      return { usable: true, detail: `Docker Engine ${version.Version ?? "?"} (API ${version.ApiVersion ?? "?"}) answers at ${this.client.socketPath}` };
    } catch (error) {
      return { usable: false, detail: coerceError(error).message };
    }
  }

  async createSandbox(spec: SandboxSpec, _signal?: AbortSignal): Promise<Sandbox> {
    const info = await stat(spec.workspace).catch(() => undefined);
    if (!info?.isDirectory()) throw new SandboxError(`workspace ${spec.workspace} is not a directory`);
    return new DockerSandbox({ client: this.client, spec, ociRuntime: this.ociRuntime, defaultImage: this.defaultImage, runtimeName: this.name });
  }

  /** Removes containers that executors of this host left behind when they died. */
  async reapLeftovers(): Promise<number> {
    let containers;
    try {
      containers = await this.client.list([`${LABEL.host}=${hostname()}`]);
    } catch (error) {
      this.logger.warn("could not list leftover containers", { error: coerceError(error).message });
      return 0;
    }
    const leftovers = containers.filter((container) => isLeftover(container.Labels ?? {}));
    for (const container of leftovers) {
      try {
        await this.client.remove(container.Id);
        this.logger.info("removed a leftover container", { container: container.Names?.[0] ?? container.Id, job: container.Labels?.[LABEL.job] });
      } catch (error) {
        this.logger.warn("could not remove a leftover container", { container: container.Id, error: coerceError(error).message });
      }
    }
    return leftovers.length;
  }
}
