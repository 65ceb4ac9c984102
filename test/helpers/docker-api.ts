/** Just enough of the Docker Engine API for tests that need an image in a daemon: over its socket, no CLI. */
import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { Agent, request } from "undici";

function agent(socket: string): Agent {
  return new Agent({ connect: { socketPath: socket } });
}

/** Why no daemon can be used at `socket`, or undefined when one answers. */
export async function unavailable(socket: string): Promise<string | undefined> {
  const info = await stat(socket).catch(() => undefined);
  if (!info?.isSocket()) return `no Docker daemon socket at ${socket}`;
  const dispatcher = agent(socket);
  try {
    const response = await request("http://docker/_ping", { dispatcher, signal: AbortSignal.timeout(3000) });
    await response.body.dump();
    return response.statusCode === 200 ? undefined : `the Docker daemon at ${socket} answers HTTP ${response.statusCode}`;
  } catch (error) {
    return `no Docker daemon answers at ${socket}: ${(error as Error).message}`;
  } finally {
    await dispatcher.close();
  }
}

/** `docker import` of a directory, as image `name` ("repo:tag"). */
export async function importRootfs(socket: string, dir: string, name: string): Promise<void> {
  const colon = name.lastIndexOf(":");
  const tar = spawn("tar", ["-C", dir, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
  const dispatcher = agent(socket);
  try {
    const query = new URLSearchParams({ fromSrc: "-", repo: name.slice(0, colon), tag: name.slice(colon + 1) });
    const response = await request(`http://docker/images/create?${query.toString()}`, {
      dispatcher,
      method: "POST",
      headers: { "content-type": "application/x-tar" },
      body: tar.stdout,
    });
    const text = await response.body.text();
    if (response.statusCode !== 200 || /"error"/.test(text)) throw new Error(`docker import of ${name} failed: HTTP ${response.statusCode} ${text.slice(0, 300)}`);
  } finally {
    await dispatcher.close();
  }
}

/** Removes an image this test created (never one it did not). */
export async function removeImage(socket: string, name: string): Promise<void> {
  const dispatcher = agent(socket);
  try {
    const path = name.split("/").map(encodeURIComponent).join("/");
    const response = await request(`http://docker/images/${path}`, { dispatcher, method: "DELETE" });
    await response.body.dump();
  } finally {
    await dispatcher.close();
  }
}
