/**
 * An online backup of a coordinator's SQLite file: SQLite's backup API copies the database page
 * by page from a connection of its own while the coordinator keeps writing (WAL), and the copy is
 * one consistent state. The copy is checked (`PRAGMA integrity_check`) before it takes its name.
 */
import { existsSync, renameSync, rmSync, statSync } from "node:fs";
import { backup, DatabaseSync } from "node:sqlite";
import { ValidationError } from "../../protocol/index.ts";

export interface BackupResult {
  bytes: number;
  pages: number;
  /** schema_migrations' highest version in the copy: the Airlock schema it holds. */
  schemaVersion: number;
  jobs: number;
}

export async function backupSqlite(source: string, destination: string): Promise<BackupResult> {
  if (!existsSync(source)) throw new ValidationError(`no SQLite store at ${source} (is --data the coordinator's data dir?)`, { field: "data" });
  if (existsSync(destination)) throw new ValidationError(`--to: ${destination} exists; a backup never overwrites a file`, { field: "to" });
  const partial = `${destination}.partial`;
  rmSync(partial, { force: true });
  const db = new DatabaseSync(source, { readOnly: true });
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    const pages = await backup(db, partial);
    const copy = new DatabaseSync(partial, { readOnly: true });
    try {
      const check = copy.prepare("PRAGMA integrity_check").get() as { integrity_check?: string } | undefined;
      if (check?.integrity_check !== "ok") throw new ValidationError(`the copy failed its integrity check: ${String(check?.integrity_check)}`);
      const version = copy.prepare("SELECT max(version) AS version FROM schema_migrations").get() as { version: number | null };
      const jobs = copy.prepare("SELECT count(*) AS count FROM jobs").get() as { count: number };
      renameSync(partial, destination);
      return { bytes: statSync(destination).size, pages, schemaVersion: Number(version.version ?? 0), jobs: Number(jobs.count) };
    } finally {
      copy.close();
    }
  } finally {
    db.close();
    rmSync(partial, { force: true });
  }
}
