/** Code indexes in SQLite (see IndexStore in store.ts). */
import { ConflictError, NotFoundError } from "../../protocol/index.ts";
import { indexPolicyRecord, indexRecord, type IndexPolicyRow, type IndexRow } from "../index-rows.ts";
import type { IndexCounts, IndexFilter, IndexPolicyPatch, IndexPolicyRecord, IndexRecord, IndexStore, NewIndex } from "../store.ts";
import type { SqliteDatabase } from "./database.ts";

export class SqliteIndexStore implements IndexStore {
  private readonly db: SqliteDatabase;

  constructor(db: SqliteDatabase) {
    this.db = db;
  }

  async create(input: NewIndex, now: number): Promise<IndexRecord> {
    const row = this.db.get<IndexRow>(
      `INSERT INTO code_indexes (repository, commit_sha, root, indexer, indexer_version, job_id, artifact, state, created_at, updated_at)
       VALUES ($repository, $commit, $root, $indexer, $version, $job, $artifact, 'pending', $now, $now) RETURNING *`,
      { repository: input.repository, commit: input.commit, root: input.root, indexer: input.indexer, version: input.indexerVersion, job: input.jobId, artifact: input.artifact, now },
    );
    return indexRecord(row as IndexRow);
  }

  private end(id: number, set: string, params: Record<string, string | number>, now: number): IndexRecord {
    return this.db.write(() => {
      const row = this.db.get<IndexRow>(`UPDATE code_indexes SET ${set}, updated_at = $now WHERE id = $id AND state = 'pending' RETURNING *`, { ...params, id, now });
      if (row) return indexRecord(row);
      const existing = this.db.get<IndexRow>("SELECT * FROM code_indexes WHERE id = $id", { id });
      if (!existing) throw new NotFoundError(`index ${id} does not exist`);
      throw new ConflictError(`index ${id} is already ${existing.state}`);
    });
  }

  async complete(id: number, counts: IndexCounts, now: number): Promise<IndexRecord> {
    return this.end(
      id,
      "state = 'completed', documents = $documents, symbols = $symbols, occurrences = $occurrences, size = $size",
      { documents: counts.documents, symbols: counts.symbols, occurrences: counts.occurrences, size: counts.size },
      now,
    );
  }

  async fail(id: number, message: string, now: number): Promise<IndexRecord> {
    return this.end(id, "state = 'failed', failure_message = $message", { message }, now);
  }

  async get(id: number): Promise<IndexRecord | undefined> {
    const row = this.db.get<IndexRow>("SELECT * FROM code_indexes WHERE id = $id", { id });
    return row ? indexRecord(row) : undefined;
  }

  async list(filter: IndexFilter): Promise<IndexRecord[]> {
    return this.db
      .all<IndexRow>(
        `SELECT * FROM code_indexes WHERE ($repository IS NULL OR repository = $repository) AND ($commit IS NULL OR commit_sha = $commit)
         ORDER BY id DESC LIMIT $limit`,
        { repository: filter.repository ?? null, commit: filter.commit ?? null, limit: filter.limit },
      )
      .map(indexRecord);
  }

  async findLive(key: Pick<NewIndex, "repository" | "commit" | "root" | "indexer" | "indexerVersion">): Promise<IndexRecord | undefined> {
    const row = this.db.get<IndexRow>(
      `SELECT * FROM code_indexes WHERE repository = $repository AND commit_sha = $commit AND root = $root AND indexer = $indexer
       AND indexer_version = $version AND state <> 'failed' ORDER BY id DESC LIMIT 1`,
      { repository: key.repository, commit: key.commit, root: key.root, indexer: key.indexer, version: key.indexerVersion },
    );
    return row ? indexRecord(row) : undefined;
  }

  async getPolicy(repository: string): Promise<IndexPolicyRecord | undefined> {
    const row = this.db.get<IndexPolicyRow>("SELECT * FROM index_policies WHERE repository = $repository", { repository });
    return row ? indexPolicyRecord(row) : undefined;
  }

  async putPolicy(repository: string, patch: IndexPolicyPatch, now: number): Promise<IndexPolicyRecord> {
    const row = this.db.get<IndexPolicyRow>(
      `INSERT INTO index_policies (repository, auto_index, config, updated_at) VALUES ($repository, coalesce($auto, 0), $config, $now)
       ON CONFLICT (repository) DO UPDATE SET auto_index = coalesce($auto, auto_index), config = CASE WHEN $keepConfig THEN config ELSE $config END, updated_at = $now
       RETURNING *`,
      { repository, auto: patch.autoIndex === undefined ? null : Number(patch.autoIndex), config: patch.config ?? null, keepConfig: Number(patch.config === undefined), now },
    );
    return indexPolicyRecord(row as IndexPolicyRow);
  }

  async listPolicies(): Promise<IndexPolicyRecord[]> {
    return this.db.all<IndexPolicyRow>("SELECT * FROM index_policies ORDER BY repository").map(indexPolicyRecord);
  }

  async markHeadSeen(repository: string, head: string, now: number): Promise<boolean> {
    const row = this.db.get<IndexPolicyRow>(
      `INSERT INTO index_policies (repository, seen_head, updated_at) VALUES ($repository, $head, $now)
       ON CONFLICT (repository) DO UPDATE SET seen_head = $head, updated_at = $now WHERE index_policies.seen_head IS NOT $head
       RETURNING *`,
      { repository, head, now },
    );
    return row !== undefined;
  }
}
