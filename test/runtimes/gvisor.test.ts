/** The gvisor runtime (Docker with runsc) against the promise suite, on the real daemon. */
import { silentLogger } from "../../src/common/logger.ts";
import { GvisorRuntime } from "../../src/runtimes/gvisor/index.ts";
import { dockerUnavailable, IMAGES, jobContainers, SOCKET } from "./docker-target.ts";
import { runtimePromiseSuite } from "./promise-suite.ts";

runtimePromiseSuite({
  name: "gvisor",
  isolated: true,
  images: IMAGES,
  async setup() {
    const runtime = new GvisorRuntime({ host: SOCKET, ociRuntime: process.env.AIRLOCK_GVISOR_RUNTIME ?? "runsc", logger: silentLogger });
    const why = await dockerUnavailable(runtime);
    return why ? { skip: why } : { runtime };
  },
  leftovers: jobContainers,
});
