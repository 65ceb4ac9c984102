/** `airlock server`: run a coordinator until SIGTERM/SIGINT. */
import { createLogger } from "../../common/logger.ts";
import { resolveCoordinatorConfig } from "../../coordinator/config.ts";
import { startCoordinator } from "../../coordinator/server.ts";
import { println, type CliIO } from "../context.ts";
import { waitForSignal } from "../signals.ts";

export async function serverCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const config = resolveCoordinatorConfig(flags, io.env);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const coordinator = await startCoordinator(config, logger);
  println(io.stderr, `Airlock coordinator at ${coordinator.url} (data in ${config.dataDir})`);
  if (coordinator.tokenFiles.executor) println(io.stderr, `executor token: ${coordinator.tokenFiles.executor}`);
  if (coordinator.tokenFiles.api) println(io.stderr, `API token:      ${coordinator.tokenFiles.api}`);
  const signal = await waitForSignal();
  logger.info("shutting down", { signal });
  await coordinator.close();
  return 0;
}
