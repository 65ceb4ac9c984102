/**
 * Images from a local Docker daemon, over its API socket (no docker CLI): look an image up by
 * name to learn its id (the digest of its config, the cache key), and export it once, as the
 * tar `docker save` produces, when that id is not unpacked yet.
 */
import { stat } from "node:fs/promises";
import { Agent, request, type Dispatcher } from "undici";
import { SandboxError } from "../../protocol/index.ts";

export class DockerUnavailableError extends SandboxError {}

export interface DockerImage {
  /** "sha256:<hex>", the digest of the image config. */
  id: string;
}

export class DockerImageSource {
  readonly socketPath: string;
  private agent: Agent | undefined;

  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  private dispatcher(): Agent {
    this.agent ??= new Agent({ connect: { socketPath: this.socketPath }, headersTimeout: 30_000, bodyTimeout: 0 });
    return this.agent;
  }

  private async call(path: string, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const exists = await stat(this.socketPath).then(
      (info) => info.isSocket(),
      () => false,
    );
    if (!exists) throw new DockerUnavailableError(`no Docker daemon socket at ${this.socketPath}`);
    try {
      return await request(`http://docker${path}`, { dispatcher: this.dispatcher(), signal: signal ?? AbortSignal.timeout(30_000) });
    } catch (error) {
      throw new DockerUnavailableError(`the Docker daemon at ${this.socketPath} does not answer: ${(error as Error).message}`);
    }
  }

  private static imagePath(name: string): string {
    return name.split("/").map(encodeURIComponent).join("/");
  }

  /** The image's id, or undefined when the daemon does not have it. */
  async inspect(name: string, signal?: AbortSignal): Promise<DockerImage | undefined> {
    const response = await this.call(`/images/${DockerImageSource.imagePath(name)}/json`, signal);
    if (response.statusCode === 404) {
      await response.body.dump();
      return undefined;
    }
    const body = (await response.body.json().catch(() => undefined)) as { Id?: unknown; message?: unknown } | undefined;
    if (response.statusCode !== 200 || typeof body?.Id !== "string" || !/^sha256:[0-9a-f]{64}$/.test(body.Id)) {
      throw new SandboxError(`the Docker daemon could not inspect image ${name}: HTTP ${response.statusCode} ${typeof body?.message === "string" ? body.message : ""}`.trim());
    }
    return { id: body.Id };
  }

  /** The image as a `docker save` tar stream. */
  async export(name: string, signal?: AbortSignal): Promise<Dispatcher.ResponseData["body"]> {
    const response = await this.call(`/images/${DockerImageSource.imagePath(name)}/get`, signal);
    if (response.statusCode !== 200) {
      const text = await response.body.text().catch(() => "");
      throw new SandboxError(`the Docker daemon could not export image ${name}: HTTP ${response.statusCode} ${text.slice(0, 200)}`.trim());
    }
    return response.body;
  }

  async close(): Promise<void> {
    await this.agent?.close();
    this.agent = undefined;
  }
}
