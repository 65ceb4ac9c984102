/**
 * Executors inside the egress world (world.ts), for the end-to-end test and the benchmark: which
 * sandboxing runtimes can run here, and an executor of one of them started in the world, serving
 * a queue named after its runtime, with the world's public host allowed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { silentLogger } from "../../src/common/logger.ts";
import { allRuntimes } from "../../src/runtimes/index.ts";
import { TEST_IMAGES } from "../helpers/bwrap.ts";
import { baseEnv, ENTRY } from "../helpers/cluster.ts";
import { DATA_DIR, microvmUnavailable } from "../runtimes/microvm-target.ts";
import { PUBLIC, type EgressWorld } from "./world.ts";

export const SANDBOX_RUNTIMES = ["bwrap", "docker", "gvisor", "microvm"] as const;
export type SandboxRuntime = (typeof SANDBOX_RUNTIMES)[number];

/** Why `name` cannot run here, or undefined. */
export async function runtimeUnavailable(name: SandboxRuntime): Promise<string | undefined> {
  if (name === "microvm") {
    const reason = await microvmUnavailable();
    if (reason) return reason;
  }
  const runtime = allRuntimes({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: DATA_DIR, logger: silentLogger, images: [TEST_IMAGES] }).find((item) => item.name === name);
  const probe = await runtime?.probe();
  return probe?.usable ? undefined : (probe?.detail ?? `no runtime ${name}`);
}

export interface WorldExecutor {
  child: ChildProcess;
  /** Rejects with the end of the executor's log if it exits before `stop`. */
  died: Promise<never>;
  stop(): Promise<void>;
}

export function startWorldExecutor(world: EgressWorld, options: { url: string; token: string; runtime: SandboxRuntime; extraArgs?: string[] }): WorldExecutor {
  const { runtime } = options;
  const logFile = join(world.dir, `executor-${runtime}.log`);
  const args = [ENTRY, "executor", "run", "--url", options.url, "--runtime", runtime, "--queues", runtime, "--images", TEST_IMAGES, "--egress-allow", `${PUBLIC.address}/32`];
  args.push("--data", runtime === "microvm" ? DATA_DIR : join(world.dir, `executor-${runtime}`), "--workspace-root", join(world.dir, `workspaces-${runtime}`));
  args.push("--name", `egress-${runtime}`, "--log-format", "json", ...(options.extraArgs ?? []));
  const argv = world.inWorld([process.execPath, ...args]);
  const log = openSync(logFile, "a");
  const child = spawn(argv[0] ?? "", argv.slice(1), { env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: options.token }, stdio: ["ignore", log, log] });
  let stopping = false;
  const died = new Promise<never>((_resolve, reject) =>
    child.once("exit", (code) => {
      if (!stopping) reject(new Error(`the ${runtime} executor exited (${code}): ${readFileSync(logFile, "utf8").slice(-2000)}`));
    }),
  );
  died.catch(() => undefined);
  return {
    child,
    died,
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
