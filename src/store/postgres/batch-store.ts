/**
 * Batches, their versions and entries in Postgres (see BatchStore in store.ts). A new version is
 * one transaction: the batch row's upsert takes its row lock and bumps latest_version, so two
 * previews of one name racing get versions n and n+1; the entries go in with one statement.
 */
import { NotFoundError } from "../../protocol/index.ts";
import { batchEntryRecord, batchRecord, batchVersionRecord, ENTRY_ORDER, patchColumns, type BatchEntryRow, type BatchRow, type BatchVersionRow } from "../batch-rows.ts";
import { storedBatchSecrets, toSealed, type SecretRow } from "../secret-rows.ts";
import type { BatchEntryPatch, BatchEntryRecord, BatchRecord, BatchStore, BatchVersionRecord, NewBatchVersion, SealedSecret } from "../store.ts";
import type { PostgresDatabase } from "./database.ts";

export class PostgresBatchStore implements BatchStore {
  private readonly db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.db = db;
  }

  async createVersion(input: NewBatchVersion, now: number): Promise<{ batch: BatchRecord; version: BatchVersionRecord; entries: BatchEntryRecord[] }> {
    const stored = storedBatchSecrets(input);
    return this.db.tx(async (client) => {
      const { rows: batches } = await client.query<BatchRow>(
        `INSERT INTO batches (name, description, latest_version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description, latest_version = batches.latest_version + 1, updated_at = excluded.updated_at
         RETURNING *`,
        [input.name, input.description, now],
      );
      const batch = batches[0] as BatchRow;
      const { rows: versions } = await client.query<BatchVersionRow>(
        "INSERT INTO batch_versions (batch_id, version, spec, spec_text, source, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        [batch.id, batch.latest_version, JSON.stringify(stored.spec), stored.specText, input.source, now],
      );
      if (stored.secrets.length > 0) {
        await client.query(
          `INSERT INTO batch_secrets (batch_id, version, name, key_id, nonce, ciphertext)
           SELECT $1, $2, s.name, s.key_id, s.nonce, s.ciphertext FROM unnest($3::text[], $4::text[], $5::bytea[], $6::bytea[]) AS s (name, key_id, nonce, ciphertext)`,
          [
            batch.id,
            batch.latest_version,
            stored.secrets.map((secret) => secret.name),
            stored.secrets.map((secret) => secret.keyId),
            stored.secrets.map((secret) => Buffer.from(secret.nonce)),
            stored.secrets.map((secret) => Buffer.from(secret.ciphertext)),
          ],
        );
      }
      const records = input.entries.map((entry, index) => ({
        ord: index,
        repository: entry.repository,
        workspace: entry.workspace,
        branch: entry.branch,
        commit_sha: entry.commit,
        job_id: entry.jobId,
        cached_from: entry.cachedFromEntryId,
        state: entry.state,
        diff_files: entry.diffStat?.files ?? null,
        diff_added: entry.diffStat?.added ?? null,
        diff_deleted: entry.diffStat?.deleted ?? null,
        cache_key: entry.cacheKey,
        failure_message: entry.failureMessage,
      }));
      const { rows: inserted } = await client.query<BatchEntryRow & { ord: number }>(
        `INSERT INTO batch_entries (batch_id, version, repository, workspace, branch, commit_sha, job_id, cached_from, state, diff_files, diff_added, diff_deleted, cache_key, failure_message, created_at, updated_at)
         SELECT $1, $2, r.repository, r.workspace, r.branch, r.commit_sha, r.job_id, r.cached_from, r.state, r.diff_files, r.diff_added, r.diff_deleted, r.cache_key, r.failure_message, $3, $3
         FROM json_to_recordset($4::json) AS r(ord integer, repository text, workspace text, branch text, commit_sha text, job_id bigint, cached_from bigint, state text,
           diff_files integer, diff_added integer, diff_deleted integer, cache_key text, failure_message text)
         ORDER BY r.ord
         RETURNING id`,
        [batch.id, batch.latest_version, now, JSON.stringify(records)],
      );
      // Ids are assigned in insertion order, which follows `ord`.
      const ids = inserted.map((row) => Number(row.id)).sort((a, b) => a - b);
      for (const [index, entry] of input.entries.entries()) {
        for (const [name, data] of Object.entries(entry.blobs ?? {})) {
          await client.query("INSERT INTO batch_entry_blobs (entry_id, name, data) VALUES ($1, $2, $3)", [ids[index], name, Buffer.from(data)]);
        }
      }
      const { rows: entries } = await client.query<BatchEntryRow>(`SELECT * FROM batch_entries WHERE batch_id = $1 AND version = $2 ${ENTRY_ORDER}`, [batch.id, batch.latest_version]);
      return { batch: batchRecord(batch), version: batchVersionRecord(versions[0] as BatchVersionRow), entries: entries.map(batchEntryRecord) };
    });
  }

  async versionSecrets(batchId: number, version: number): Promise<SealedSecret[]> {
    const rows = await this.db.query<SecretRow>("SELECT name, key_id, nonce, ciphertext FROM batch_secrets WHERE batch_id = $1 AND version = $2 ORDER BY name", [batchId, version]);
    return rows.map(toSealed);
  }

  async getBatch(name: string): Promise<BatchRecord | undefined> {
    const [row] = await this.db.query<BatchRow>("SELECT * FROM batches WHERE name = $1", [name]);
    return row ? batchRecord(row) : undefined;
  }

  async listBatches(limit: number): Promise<BatchRecord[]> {
    return (await this.db.query<BatchRow>("SELECT * FROM batches ORDER BY updated_at DESC, id DESC LIMIT $1", [limit])).map(batchRecord);
  }

  async listVersions(batchId: number): Promise<number[]> {
    return (await this.db.query<{ version: number }>("SELECT version FROM batch_versions WHERE batch_id = $1 ORDER BY version", [batchId])).map((row) => Number(row.version));
  }

  async getVersion(batchId: number, version: number): Promise<BatchVersionRecord | undefined> {
    const [row] = await this.db.query<BatchVersionRow>("SELECT * FROM batch_versions WHERE batch_id = $1 AND version = $2", [batchId, version]);
    return row ? batchVersionRecord(row) : undefined;
  }

  async listEntries(batchId: number, version: number): Promise<BatchEntryRecord[]> {
    return (await this.db.query<BatchEntryRow>(`SELECT * FROM batch_entries WHERE batch_id = $1 AND version = $2 ${ENTRY_ORDER}`, [batchId, version])).map(batchEntryRecord);
  }

  async getEntry(id: number): Promise<BatchEntryRecord | undefined> {
    const [row] = await this.db.query<BatchEntryRow>("SELECT * FROM batch_entries WHERE id = $1", [id]);
    return row ? batchEntryRecord(row) : undefined;
  }

  async updateEntry(id: number, patch: BatchEntryPatch, now: number): Promise<BatchEntryRecord> {
    const columns = { ...patchColumns(patch), updated_at: now };
    const names = Object.keys(columns);
    const sets = names.map((column, index) => `${column} = $${index + 2}`);
    const [row] = await this.db.query<BatchEntryRow>(`UPDATE batch_entries SET ${sets.join(", ")} WHERE id = $1 RETURNING *`, [id, ...names.map((name) => columns[name as keyof typeof columns])]);
    if (!row) throw new NotFoundError(`batch entry ${id} does not exist`);
    return batchEntryRecord(row);
  }

  async findCached(cacheKey: string): Promise<BatchEntryRecord | undefined> {
    const [row] = await this.db.query<BatchEntryRow>(
      "SELECT * FROM batch_entries WHERE cache_key = $1 AND state = 'completed' AND cached_from IS NULL ORDER BY id DESC LIMIT 1",
      [cacheKey],
    );
    return row ? batchEntryRecord(row) : undefined;
  }

  async putBlob(entryId: number, name: string, data: Uint8Array): Promise<void> {
    await this.db.query(
      "INSERT INTO batch_entry_blobs (entry_id, name, data) VALUES ($1, $2, $3) ON CONFLICT (entry_id, name) DO UPDATE SET data = excluded.data",
      [entryId, name, Buffer.from(data)],
    );
  }

  async readBlob(entryId: number, name: string): Promise<Uint8Array | undefined> {
    const [row] = await this.db.query<{ data: Buffer }>("SELECT data FROM batch_entry_blobs WHERE entry_id = $1 AND name = $2", [entryId, name]);
    return row ? Buffer.from(row.data) : undefined;
  }
}
