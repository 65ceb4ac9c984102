/** Registered repositories in SQLite. */
import type { RepositoryRecord, RepositoryStore } from "../store.ts";
import type { SqliteDatabase } from "./database.ts";

export class SqliteRepositoryStore implements RepositoryStore {
  private readonly db: SqliteDatabase;

  constructor(db: SqliteDatabase) {
    this.db = db;
  }

  async put(name: string, source: string, now: number): Promise<RepositoryRecord> {
    const row = this.db.get<{ name: string; source: string; created_at: number }>(
      `INSERT INTO repositories (name, source, created_at) VALUES ($name, $source, $now)
       ON CONFLICT (name) DO UPDATE SET source = excluded.source RETURNING *`,
      { name, source, now },
    );
    return { name, source, createdAt: Number(row?.created_at) };
  }

  async get(name: string): Promise<RepositoryRecord | undefined> {
    const row = this.db.get<{ name: string; source: string; created_at: number }>("SELECT * FROM repositories WHERE name = $name", { name });
    return row ? { name: row.name, source: row.source, createdAt: Number(row.created_at) } : undefined;
  }

  async list(): Promise<RepositoryRecord[]> {
    return this.db
      .all<{ name: string; source: string; created_at: number }>("SELECT * FROM repositories ORDER BY name")
      .map((row) => ({ name: row.name, source: row.source, createdAt: Number(row.created_at) }));
  }
}
