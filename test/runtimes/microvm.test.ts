/** The microvm runtime against the promise suite, with real QEMU (TCG here: slow boots, so one shared VM where the suite allows). */
import { runtimePromiseSuite } from "./promise-suite.ts";
import { IMAGES, leftovers, microvmRuntime, microvmUnavailable } from "./microvm-target.ts";

runtimePromiseSuite({
  name: "microvm",
  isolated: true,
  images: IMAGES,
  slack: 8,
  shareSandbox: true,
  async setup() {
    const why = await microvmUnavailable();
    return why ? { skip: why } : { runtime: microvmRuntime() };
  },
  leftovers,
});
