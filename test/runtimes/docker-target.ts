/**
 * What the docker and gvisor promise-suite runs share: the real daemon, the test images, and
 * "leftovers" = every container (in any state) labelled with the job.
 */
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import type { Runtime } from "../../src/runtimes/index.ts";
import { LABEL } from "../../src/runtimes/labels.ts";

export const SOCKET = (process.env.DOCKER_HOST ?? "/var/run/docker.sock").replace(/^unix:\/\//, "");
export const IMAGES = { primary: "airlock-test/busybox", secondary: "airlock-test/tools" };

/** Why Docker tests cannot run here, or undefined when the daemon answers and has the test images. */
export async function dockerUnavailable(runtime: Runtime): Promise<string | undefined> {
  const probe = await runtime.probe();
  if (!probe.usable) return probe.detail;
  const client = new DockerClient({ socketPath: SOCKET });
  try {
    for (const image of Object.values(IMAGES)) {
      if (!(await client.imageExists(image))) return `test image ${image} is missing (scripts/test-images.sh imports it)`;
    }
    return undefined;
  } finally {
    await client.close();
  }
}

/** Containers (running or not) labelled with this job. */
export async function jobContainers(jobId: number): Promise<string[]> {
  const client = new DockerClient({ socketPath: SOCKET });
  try {
    const found = await client.list([`${LABEL.job}=${jobId}`]);
    return found.map((container) => `${container.Names?.[0] ?? container.Id} (${container.State ?? "?"})`);
  } finally {
    await client.close();
  }
}
