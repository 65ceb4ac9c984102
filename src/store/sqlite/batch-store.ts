/** Batches, their versions and entries in SQLite (see BatchStore in store.ts). */
import { NotFoundError } from "../../protocol/index.ts";
import { batchEntryRecord, batchRecord, batchVersionRecord, ENTRY_ORDER, patchColumns, type BatchEntryRow, type BatchRow, type BatchVersionRow } from "../batch-rows.ts";
import { storedBatchSecrets, toSealed, type SecretRow } from "../secret-rows.ts";
import type { BatchEntryPatch, BatchEntryRecord, BatchRecord, BatchStore, BatchVersionRecord, NewBatchVersion, SealedSecret } from "../store.ts";
import type { SqliteDatabase } from "./database.ts";

export class SqliteBatchStore implements BatchStore {
  private readonly db: SqliteDatabase;

  constructor(db: SqliteDatabase) {
    this.db = db;
  }

  async createVersion(input: NewBatchVersion, now: number): Promise<{ batch: BatchRecord; version: BatchVersionRecord; entries: BatchEntryRecord[] }> {
    const stored = storedBatchSecrets(input);
    return this.db.write(() => {
      const batch = this.db.get<BatchRow>(
        `INSERT INTO batches (name, description, latest_version, created_at, updated_at) VALUES ($name, $description, 1, $now, $now)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description, latest_version = batches.latest_version + 1, updated_at = excluded.updated_at
         RETURNING *`,
        { name: input.name, description: input.description, now },
      ) as BatchRow;
      const version = this.db.get<BatchVersionRow>(
        `INSERT INTO batch_versions (batch_id, version, spec, spec_text, source, created_at) VALUES ($batch, $version, $spec, $text, $source, $now) RETURNING *`,
        { batch: batch.id, version: batch.latest_version, spec: JSON.stringify(stored.spec), text: stored.specText, source: input.source, now },
      ) as BatchVersionRow;
      for (const secret of stored.secrets) {
        this.db.run("INSERT INTO batch_secrets (batch_id, version, name, key_id, nonce, ciphertext) VALUES ($batch, $version, $name, $keyId, $nonce, $ciphertext)", {
          batch: batch.id,
          version: batch.latest_version,
          name: secret.name,
          keyId: secret.keyId,
          nonce: secret.nonce,
          ciphertext: secret.ciphertext,
        });
      }
      const insert = this.db.db.prepare(
        `INSERT INTO batch_entries (batch_id, version, repository, workspace, branch, commit_sha, job_id, cached_from, state, diff_files, diff_added, diff_deleted, cache_key, failure_message, created_at, updated_at)
         VALUES ($batch, $version, $repository, $workspace, $branch, $commit, $job, $cached, $state, $files, $added, $deleted, $key, $failure, $now, $now) RETURNING id`,
      );
      const blob = this.db.db.prepare("INSERT INTO batch_entry_blobs (entry_id, name, data) VALUES ($entry, $name, $data)");
      for (const entry of input.entries) {
        const row = insert.get({
          batch: batch.id,
          version: batch.latest_version,
          repository: entry.repository,
          workspace: entry.workspace,
          branch: entry.branch,
          commit: entry.commit,
          job: entry.jobId,
          cached: entry.cachedFromEntryId,
          state: entry.state,
          files: entry.diffStat?.files ?? null,
          added: entry.diffStat?.added ?? null,
          deleted: entry.diffStat?.deleted ?? null,
          key: entry.cacheKey,
          failure: entry.failureMessage,
          now,
        }) as { id: number };
        for (const [name, data] of Object.entries(entry.blobs ?? {})) blob.run({ entry: row.id, name, data });
      }
      const entries = this.db.all<BatchEntryRow>(`SELECT * FROM batch_entries WHERE batch_id = $batch AND version = $version ${ENTRY_ORDER}`, { batch: batch.id, version: batch.latest_version });
      return { batch: batchRecord(batch), version: batchVersionRecord(version), entries: entries.map(batchEntryRecord) };
    });
  }

  async versionSecrets(batchId: number, version: number): Promise<SealedSecret[]> {
    return this.db
      .all<SecretRow>("SELECT name, key_id, nonce, ciphertext FROM batch_secrets WHERE batch_id = $batch AND version = $version ORDER BY name", { batch: batchId, version })
      .map(toSealed);
  }

  async getBatch(name: string): Promise<BatchRecord | undefined> {
    const row = this.db.get<BatchRow>("SELECT * FROM batches WHERE name = $name", { name });
    return row ? batchRecord(row) : undefined;
  }

  async listBatches(limit: number): Promise<BatchRecord[]> {
    return this.db.all<BatchRow>("SELECT * FROM batches ORDER BY updated_at DESC, id DESC LIMIT $limit", { limit }).map(batchRecord);
  }

  async listVersions(batchId: number): Promise<number[]> {
    return this.db.all<{ version: number }>("SELECT version FROM batch_versions WHERE batch_id = $batch ORDER BY version", { batch: batchId }).map((row) => Number(row.version));
  }

  async getVersion(batchId: number, version: number): Promise<BatchVersionRecord | undefined> {
    const row = this.db.get<BatchVersionRow>("SELECT * FROM batch_versions WHERE batch_id = $batch AND version = $version", { batch: batchId, version });
    return row ? batchVersionRecord(row) : undefined;
  }

  async listEntries(batchId: number, version: number): Promise<BatchEntryRecord[]> {
    return this.db.all<BatchEntryRow>(`SELECT * FROM batch_entries WHERE batch_id = $batch AND version = $version ${ENTRY_ORDER}`, { batch: batchId, version }).map(batchEntryRecord);
  }

  async getEntry(id: number): Promise<BatchEntryRecord | undefined> {
    const row = this.db.get<BatchEntryRow>("SELECT * FROM batch_entries WHERE id = $id", { id });
    return row ? batchEntryRecord(row) : undefined;
  }

  async updateEntry(id: number, patch: BatchEntryPatch, now: number): Promise<BatchEntryRecord> {
    const columns = { ...patchColumns(patch), updated_at: now };
    const sets = Object.keys(columns).map((column) => `${column} = $${column}`);
    const row = this.db.get<BatchEntryRow>(`UPDATE batch_entries SET ${sets.join(", ")} WHERE id = $id RETURNING *`, { ...columns, id });
    if (!row) throw new NotFoundError(`batch entry ${id} does not exist`);
    return batchEntryRecord(row);
  }

  async findCached(cacheKey: string): Promise<BatchEntryRecord | undefined> {
    const row = this.db.get<BatchEntryRow>(
      "SELECT * FROM batch_entries WHERE cache_key = $key AND state = 'completed' AND cached_from IS NULL ORDER BY id DESC LIMIT 1",
      { key: cacheKey },
    );
    return row ? batchEntryRecord(row) : undefined;
  }

  async putBlob(entryId: number, name: string, data: Uint8Array): Promise<void> {
    this.db.run("INSERT INTO batch_entry_blobs (entry_id, name, data) VALUES ($entry, $name, $data) ON CONFLICT (entry_id, name) DO UPDATE SET data = excluded.data", {
      entry: entryId,
      name,
      data,
    });
  }

  async readBlob(entryId: number, name: string): Promise<Uint8Array | undefined> {
    const row = this.db.get<{ data: Uint8Array }>("SELECT data FROM batch_entry_blobs WHERE entry_id = $entry AND name = $name", { entry: entryId, name });
    return row ? Buffer.from(row.data) : undefined;
  }
}
