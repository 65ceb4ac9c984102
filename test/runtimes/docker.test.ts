/** The docker runtime against the promise suite, on the real daemon. */
import { silentLogger } from "../../src/common/logger.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { dockerUnavailable, IMAGES, jobContainers, SOCKET } from "./docker-target.ts";
import { runtimePromiseSuite } from "./promise-suite.ts";

runtimePromiseSuite({
  name: "docker",
  isolated: true,
  images: IMAGES,
  async setup() {
    const runtime = new DockerRuntime({ host: SOCKET, logger: silentLogger });
    const why = await dockerUnavailable(runtime);
    return why ? { skip: why } : { runtime };
  },
  leftovers: jobContainers,
});
