/** `airlock server`: run a coordinator until SIGTERM/SIGINT; `airlock server rotate-secrets-key`. */
import { join, resolve } from "node:path";
import { ConfigSource } from "../../common/config-source.ts";
import { createLogger } from "../../common/logger.ts";
import { coerceError } from "../../protocol/index.ts";
import { resolveCoordinatorConfig } from "../../coordinator/config.ts";
import { readSecretKeyFile } from "../../coordinator/secrets/keyring.ts";
import { rotateSecretsKey } from "../../coordinator/secrets/rotate.ts";
import { startCoordinator } from "../../coordinator/server.ts";
import { ValidationError } from "../../protocol/index.ts";
import { openStore } from "../../store/index.ts";
import { println, type CliIO } from "../context.ts";
import { waitForSignal } from "../signals.ts";

export async function serverCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const config = resolveCoordinatorConfig(flags, io.env);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const coordinator = await startCoordinator(config, logger);
  println(io.stderr, `Airlock coordinator at ${coordinator.url} (data in ${config.dataDir})`);
  if (coordinator.tokenFiles.executor) println(io.stderr, `executor token: ${coordinator.tokenFiles.executor}`);
  if (coordinator.tokenFiles.api) println(io.stderr, `API token:      ${coordinator.tokenFiles.api}`);
  // SIGHUP (systemctl reload): read the token files again, for rotating a token without a restart.
  const reload = (): void => {
    try {
      logger.info("tokens reloaded", { accepted: coordinator.reloadTokens() });
    } catch (error) {
      logger.error("tokens not reloaded: keeping the ones in use", { error: coerceError(error).message });
    }
  };
  process.on("SIGHUP", reload);
  const signal = await waitForSignal();
  process.off("SIGHUP", reload);
  logger.info("shutting down", { signal });
  await coordinator.close();
  return 0;
}

/** `airlock server rotate-secrets-key`: re-seals every stored job secret under a new key. */
export async function rotateSecretsKeyCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const source = new ConfigSource(flags, io.env);
  const newPath = source.string("newKeyFile", undefined);
  if (!newPath) throw new ValidationError("--new-key-file is required: the key to seal stored secrets with", { field: "newKeyFile" });
  const oldPaths = source.list("oldKeyFile", undefined, []);
  const newKey = readSecretKeyFile(resolve(newPath), "--new-key-file");
  const oldKeys = oldPaths.map((path) => readSecretKeyFile(resolve(path), "--old-key-file"));
  const dataDir = resolve(source.string("data", "AIRLOCK_DATA", ".airlock"));
  const databaseUrl = source.string("database", "AIRLOCK_DATABASE_URL");
  const store = await openStore({ databaseUrl, sqlitePath: join(dataDir, "airlock.db") });
  try {
    const report = await rotateSecretsKey(store, oldKeys, newKey);
    println(io.stdout, `re-sealed ${report.resealed} secret(s) under key ${newKey.id}; ${report.alreadyNew} already under it; ${report.vanished} gone meanwhile (their jobs ended)`);
    const unknown = Object.entries(report.unknown);
    for (const [id, count] of unknown) println(io.stderr, `${count} secret(s) are sealed under key ${id}, which was not given (--old-key-file): left as they are`);
    return unknown.length > 0 ? 1 : 0;
  } finally {
    await store.close();
  }
}
