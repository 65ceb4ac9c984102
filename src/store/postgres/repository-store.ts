/** Registered repositories in Postgres (each coordinator mirrors them into its own data dir). */
import type { RepositoryRecord, RepositoryStore } from "../store.ts";
import type { PostgresDatabase } from "./database.ts";

interface RepositoryRow {
  name: string;
  source: string;
  created_at: number;
}

const toRecord = (row: RepositoryRow): RepositoryRecord => ({ name: row.name, source: row.source, createdAt: row.created_at });

export class PostgresRepositoryStore implements RepositoryStore {
  private readonly db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.db = db;
  }

  async put(name: string, source: string, now: number): Promise<RepositoryRecord> {
    const [row] = await this.db.query<RepositoryRow>(
      `INSERT INTO repositories (name, source, created_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET source = excluded.source RETURNING *`,
      [name, source, now],
    );
    return toRecord(row as RepositoryRow);
  }

  async get(name: string): Promise<RepositoryRecord | undefined> {
    const [row] = await this.db.query<RepositoryRow>("SELECT * FROM repositories WHERE name = $1", [name]);
    return row ? toRecord(row) : undefined;
  }

  async list(): Promise<RepositoryRecord[]> {
    return (await this.db.query<RepositoryRow>('SELECT * FROM repositories ORDER BY name COLLATE "C"')).map(toRecord);
  }
}
