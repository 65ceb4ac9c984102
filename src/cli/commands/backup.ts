/** `airlock server backup --to FILE`: a consistent copy of a running coordinator's SQLite store. */
import { join, resolve } from "node:path";
import { resolveCoordinatorConfig } from "../../coordinator/config.ts";
import { formatSize, ValidationError } from "../../protocol/index.ts";
import { backupSqlite } from "../../store/sqlite/backup.ts";
import { println, type CliIO } from "../context.ts";

export async function backupCommand(flags: Record<string, unknown>, io: CliIO): Promise<number> {
  const config = resolveCoordinatorConfig(flags, io.env);
  if (typeof flags.to !== "string" || flags.to === "") throw new ValidationError("--to FILE is required", { field: "to" });
  if (config.databaseUrl) {
    throw new ValidationError("this coordinator's store is Postgres: back it up with pg_dump, e.g. pg_dump --format=custom --file=airlock.dump \"$AIRLOCK_DATABASE_URL\" (docs/deploy.md#backups)", { field: "database" });
  }
  const to = resolve(flags.to);
  const result = await backupSqlite(join(config.dataDir, "airlock.db"), to);
  println(io.stdout, `backed up ${join(config.dataDir, "airlock.db")} to ${to}: ${formatSize(result.bytes)}, schema version ${result.schemaVersion}, ${result.jobs} jobs`);
  println(io.stdout, `the tokens and repository mirrors are files in ${config.dataDir}: copy those too (docs/deploy.md#backups)`);
  return 0;
}
