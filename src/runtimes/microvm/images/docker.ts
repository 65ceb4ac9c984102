/**
 * Step images from a local Docker daemon: the image's id and env from its inspect, its root
 * filesystem from `export` of a container created (never started) from it, then removed.
 */
import { request } from "node:http";
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { SandboxError } from "../../../protocol/index.ts";

export interface DockerImage {
  id: string;
  env: string[];
}

function call(socketPath: string, method: string, path: string, body?: object): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: body ? { "content-type": "application/json" } : {} }, resolve);
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

async function json<T>(response: IncomingMessage): Promise<T> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if ((response.statusCode ?? 500) >= 300) throw new SandboxError(`Docker answered ${response.statusCode}: ${text.trim().slice(0, 300)}`);
  return (text ? JSON.parse(text) : {}) as T;
}

/** The image, or undefined when the daemon does not answer or does not have it. */
export async function inspectDockerImage(socketPath: string, image: string): Promise<DockerImage | undefined> {
  let response: IncomingMessage;
  try {
    response = await call(socketPath, "GET", `/images/${encodeURIComponent(image)}/json`);
  } catch {
    return undefined;
  }
  if (response.statusCode === 404) {
    response.resume();
    return undefined;
  }
  const info = await json<{ Id: string; Config?: { Env?: string[] | null } }>(response);
  return { id: info.Id, env: info.Config?.Env ?? [] };
}

/** Streams the image's flattened root filesystem (a tar) to `consume`. */
export async function exportDockerImage(socketPath: string, image: string, labels: Record<string, string>, consume: (tar: IncomingMessage) => Promise<void>): Promise<void> {
  const name = `airlock-microvm-export-${randomBytes(4).toString("hex")}`;
  const created = await json<{ Id: string }>(
    await call(socketPath, "POST", `/containers/create?name=${name}`, { Image: image, Cmd: ["/bin/true"], Entrypoint: [], NetworkDisabled: true, Labels: labels }),
  );
  try {
    const response = await call(socketPath, "GET", `/containers/${created.Id}/export`);
    if (response.statusCode !== 200) await json(response);
    await consume(response);
  } finally {
    (await call(socketPath, "DELETE", `/containers/${created.Id}?force=1`)).resume();
  }
}
