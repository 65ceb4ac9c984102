/** Code indexes in Postgres (as in the SQLite store; see IndexStore in store.ts). */
import { ConflictError, NotFoundError } from "../../protocol/index.ts";
import { indexRecord, type IndexRow } from "../index-rows.ts";
import type { IndexCounts, IndexFilter, IndexRecord, IndexStore, NewIndex } from "../store.ts";
import type { PostgresDatabase } from "./database.ts";

export class PostgresIndexStore implements IndexStore {
  private readonly db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.db = db;
  }

  async create(input: NewIndex, now: number): Promise<IndexRecord> {
    const [row] = await this.db.query<IndexRow>(
      `INSERT INTO code_indexes (repository, commit_sha, root, indexer, indexer_version, job_id, artifact, state, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) RETURNING *`,
      [input.repository, input.commit, input.root, input.indexer, input.indexerVersion, input.jobId, input.artifact, now],
    );
    return indexRecord(row as IndexRow);
  }

  private async end(id: number, set: string, params: unknown[], now: number): Promise<IndexRecord> {
    // One statement: the update when pending, else the row as it is (to say why not).
    const [row] = await this.db.query<IndexRow & { updated: boolean }>(
      `WITH changed AS (UPDATE code_indexes SET ${set}, updated_at = $2 WHERE id = $1 AND state = 'pending' RETURNING *)
       SELECT *, true AS updated FROM changed UNION ALL SELECT *, false AS updated FROM code_indexes WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed)`,
      [id, now, ...params],
    );
    if (!row) throw new NotFoundError(`index ${id} does not exist`);
    if (!row.updated) throw new ConflictError(`index ${id} is already ${row.state}`);
    return indexRecord(row);
  }

  async complete(id: number, counts: IndexCounts, now: number): Promise<IndexRecord> {
    return this.end(id, "state = 'completed', documents = $3, symbols = $4, occurrences = $5, size = $6", [counts.documents, counts.symbols, counts.occurrences, counts.size], now);
  }

  async fail(id: number, message: string, now: number): Promise<IndexRecord> {
    return this.end(id, "state = 'failed', failure_message = $3", [message], now);
  }

  async get(id: number): Promise<IndexRecord | undefined> {
    const [row] = await this.db.query<IndexRow>("SELECT * FROM code_indexes WHERE id = $1", [id]);
    return row ? indexRecord(row) : undefined;
  }

  async list(filter: IndexFilter): Promise<IndexRecord[]> {
    const rows = await this.db.query<IndexRow>(
      `SELECT * FROM code_indexes WHERE ($1::text IS NULL OR repository = $1) AND ($2::text IS NULL OR commit_sha = $2) ORDER BY id DESC LIMIT $3`,
      [filter.repository ?? null, filter.commit ?? null, filter.limit],
    );
    return rows.map(indexRecord);
  }

  async findLive(key: Pick<NewIndex, "repository" | "commit" | "root" | "indexer" | "indexerVersion">): Promise<IndexRecord | undefined> {
    const [row] = await this.db.query<IndexRow>(
      `SELECT * FROM code_indexes WHERE repository = $1 AND commit_sha = $2 AND root = $3 AND indexer = $4 AND indexer_version = $5
       AND state <> 'failed' ORDER BY id DESC LIMIT 1`,
      [key.repository, key.commit, key.root, key.indexer, key.indexerVersion],
    );
    return row ? indexRecord(row) : undefined;
  }
}
