/** `airlock executor run` and `airlock executor validate`. */
import { mkdir } from "node:fs/promises";
import { systemClock } from "../../common/clock.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { HttpCoordinatorClient } from "../../executor/client.ts";
import { resolveExecutorConfig, type ExecutorConfig } from "../../executor/config.ts";
import { Executor } from "../../executor/executor.ts";
import { coerceError, IncompatibleProtocolError, PROTOCOL_VERSION } from "../../protocol/index.ts";
import { allRuntimes, selectRuntime, type RuntimeHost } from "../../runtimes/index.ts";
import { println, table, type CliIO } from "../context.ts";
import { checkEgress } from "./egress-check.ts";
import { waitForSignal } from "../signals.ts";

function runtimeHost(config: Readonly<ExecutorConfig>, logger: Logger): RuntimeHost {
  return {
    path: config.hostPath,
    dataDir: config.dataDir,
    logger,
    dockerHost: config.dockerHost,
    defaultImage: config.defaultImage,
    gvisorRuntime: config.gvisorRuntime,
    images: config.images,
    warmVms: config.warmVms,
    warmVmMaxAgeMs: config.warmVmMaxAgeMs,
    warmVmRefill: config.warmVmRefill,
  };
}

export async function executorRunCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const config = resolveExecutorConfig(flags, io.env);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const runtime = await selectRuntime(config.runtime, allRuntimes(runtimeHost(config, logger)), logger);
  await mkdir(config.workspaceRoot, { recursive: true, mode: 0o700 });
  const client = new HttpCoordinatorClient({ urls: config.urls, executorToken: config.token, caPath: config.caPath, logger });
  const executor = new Executor({ config, client, runtime, logger, clock: systemClock });
  try {
    await executor.start();
  } catch (error) {
    // Refused at the first heartbeat (or broken before it): nothing else has started.
    await client.close();
    throw error;
  }
  const first = await Promise.race([waitForSignal(), executor.refused]);
  if (first instanceof IncompatibleProtocolError) {
    // Nothing this executor does will be taken: its running jobs go back to be retried elsewhere.
    executor.cancelAll();
    await executor.drain();
    await client.close();
    println(io.stderr, `airlock: ${first.message}`);
    return 1;
  }
  logger.info("signal received: finishing running jobs (send it again to stop them)", { signal: first });
  const drained = executor.drain();
  const second = waitForSignal().then((signal) => {
    logger.warn("second signal: stopping running jobs; they will be retried elsewhere", { signal });
    executor.cancelAll();
  });
  await drained;
  void second;
  await client.close();
  logger.info("executor stopped");
  return 0;
}

/** What the warm pool costs: the configured size, and the idle warm VMs of executors on this host now. */
async function warmPoolDetail(config: Readonly<ExecutorConfig>): Promise<string> {
  const { warmVmsOnHost, WARM_VM_MEMORY_MIB } = await import("../../runtimes/microvm/index.ts");
  const now = warmVmsOnHost();
  const mib = (bytes: number): string => `${Math.round(bytes / 1024 ** 2)} MiB`;
  const refill = config.warmVmRefill === "restore" ? "restored from a snapshot of a booted guest" : "each booted";
  const size =
    config.warmVms === 0
      ? "0 (every job boots its own VM)"
      : `${config.warmVms} idle VMs per kind (with a network device, without) of ${WARM_VM_MEMORY_MIB} MiB guest memory each, ${refill}, replaced after ${Math.round(config.warmVmMaxAgeMs / 60_000)} min idle`;
  const each = now.count > 0 ? ` (${mib(now.rssBytes / now.count)} each)` : "";
  return `${size}; on this host now: ${now.count} idle warm VMs using ${mib(now.rssBytes)} resident${each}`;
}

export async function executorValidateCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const config = resolveExecutorConfig(flags, io.env);
  const logger = createLogger({ level: "silent", format: "text" });
  const client = new HttpCoordinatorClient({ urls: config.urls, executorToken: config.token, caPath: config.caPath, logger });
  let ok = true;
  const rows: string[][] = [["CHECK", "RESULT", "DETAIL"]];
  for (const url of config.urls) {
    const single = new HttpCoordinatorClient({ urls: [url], executorToken: config.token, caPath: config.caPath, logger });
    try {
      const reply = await single.authCheck();
      const { min, max } = reply.protocol ?? { min: 1, max: 1 };
      const speaks = min === max ? `protocol ${max}` : `protocols ${min} to ${max}`;
      if (PROTOCOL_VERSION < min || PROTOCOL_VERSION > max) {
        ok = false;
        rows.push([`coordinator ${url}`, "FAIL", `Airlock ${reply.version} speaks executor ${speaks}; this executor speaks protocol ${PROTOCOL_VERSION}: ${PROTOCOL_VERSION > max ? "upgrade the coordinators first" : "upgrade this executor"}`]);
      } else {
        rows.push([`coordinator ${url}`, "ok", `Airlock ${reply.version} (executor ${speaks}), lease ${reply.leaseMs} ms; executor token accepted`]);
      }
    } catch (error) {
      ok = false;
      rows.push([`coordinator ${url}`, "FAIL", coerceError(error).message]);
    } finally {
      await single.close();
    }
  }
  await client.close();
  const runtimes = allRuntimes(runtimeHost(config, logger));
  let usable = 0;
  for (const runtime of runtimes) {
    const probe = await runtime.probe();
    if (probe.usable) usable += 1;
    rows.push([`runtime ${runtime.name} (${runtime.isolation})`, probe.usable ? "usable" : "not usable", probe.detail]);
  }
  try {
    const chosen = await selectRuntime(config.runtime, runtimes, logger);
    rows.push([`--runtime ${config.runtime}`, "ok", `would run jobs with ${chosen.name} (isolation ${chosen.isolation})`]);
    if (chosen.name === "microvm") rows.push(["warm VMs (--warm-vms)", "ok", await warmPoolDetail(config)]);
  } catch (error) {
    ok = false;
    rows.push([`--runtime ${config.runtime}`, "FAIL", coerceError(error).message]);
  }
  if (usable === 0) ok = false;
  const egress = await checkEgress(config, logger);
  if (!egress.ok) ok = false;
  rows.push(["egress (--network)", egress.ok ? "ok" : "FAIL", egress.detail]);
  println(io.stdout, table(rows));
  println(io.stdout, ok ? "\nAll checks passed." : "\nSome checks failed.");
  return ok ? 0 : 1;
}
