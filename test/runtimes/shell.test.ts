/** The shell runtime against the promise suite (only the parts that apply to isolation none). */
import { ShellRuntime } from "../../src/runtimes/shell/index.ts";
import { findMarked } from "../../src/runtimes/shell/process-tree.ts";
import { runtimePromiseSuite } from "./promise-suite.ts";

runtimePromiseSuite({
  name: "shell",
  isolated: false,
  images: { primary: "ignored", secondary: "ignored" },
  async setup() {
    return { runtime: new ShellRuntime({ path: process.env.PATH ?? "/usr/bin:/bin" }) };
  },
  async leftovers(jobId) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    return findMarked((marker) => marker.startsWith(`shell-${jobId}-`)).map(String);
  },
});
