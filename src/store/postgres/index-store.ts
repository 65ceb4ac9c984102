/** Code indexes in Postgres (as in the SQLite store; see IndexStore in store.ts). */
import { ConflictError, NotFoundError } from "../../protocol/index.ts";
import { indexPolicyRecord, indexRecord, type IndexPolicyRow, type IndexRow } from "../index-rows.ts";
import type { IndexCounts, IndexFilter, IndexPolicyPatch, IndexPolicyRecord, IndexRecord, IndexStore, NewIndex } from "../store.ts";
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

  async getPolicy(repository: string): Promise<IndexPolicyRecord | undefined> {
    const [row] = await this.db.query<IndexPolicyRow>("SELECT * FROM index_policies WHERE repository = $1", [repository]);
    return row ? indexPolicyRecord(row) : undefined;
  }

  async putPolicy(repository: string, patch: IndexPolicyPatch, now: number): Promise<IndexPolicyRecord> {
    const [row] = await this.db.query<IndexPolicyRow>(
      `INSERT INTO index_policies (repository, auto_index, config, updated_at) VALUES ($1, coalesce($2::boolean, false), $3, $5)
       ON CONFLICT (repository) DO UPDATE SET auto_index = coalesce($2::boolean, index_policies.auto_index),
         config = CASE WHEN $4::boolean THEN index_policies.config ELSE $3 END, updated_at = $5
       RETURNING *`,
      [repository, patch.autoIndex ?? null, patch.config ?? null, patch.config === undefined, now],
    );
    return indexPolicyRecord(row as IndexPolicyRow);
  }

  async listPolicies(): Promise<IndexPolicyRecord[]> {
    return (await this.db.query<IndexPolicyRow>("SELECT * FROM index_policies ORDER BY repository")).map(indexPolicyRecord);
  }

  async markHeadSeen(repository: string, head: string, now: number): Promise<boolean> {
    const rows = await this.db.query<IndexPolicyRow>(
      `INSERT INTO index_policies (repository, seen_head, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (repository) DO UPDATE SET seen_head = $2, updated_at = $3 WHERE index_policies.seen_head IS DISTINCT FROM $2
       RETURNING *`,
      [repository, head, now],
    );
    return rows.length > 0;
  }
}
