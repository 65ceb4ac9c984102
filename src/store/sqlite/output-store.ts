/**
 * Logs and artifacts in SQLite, as chunks.
 *
 * Logs: each append is one row [start_offset, end_offset) of an entry; `entries.size` is the
 * entry's length. An append is checked against that size inside one write transaction, which is
 * what makes a retried append idempotent. An append before its step started makes the entry's row
 * (entries are made when first used). Artifacts: 1 MiB chunks written as they stream in,
 * made visible only by the final `artifacts` row, which is written only if the attempt is live.
 */
import { createHash } from "node:crypto";
import { ConflictError, NotFoundError } from "../../protocol/index.ts";
import { rechunk } from "../chunks.ts";
import type { ArtifactRecord, AttemptRef, OutputStore, StoreChange } from "../store.ts";
import type { SqliteDatabase } from "./database.ts";
import type { SqliteJobStore } from "./job-store.ts";

const ARTIFACT_CHUNK = 1024 * 1024;

export class SqliteOutputStore implements OutputStore {
  private readonly db: SqliteDatabase;
  private readonly jobs: SqliteJobStore;
  private readonly emit: (change: StoreChange) => void;

  constructor(db: SqliteDatabase, jobs: SqliteJobStore, emit: (change: StoreChange) => void) {
    this.db = db;
    this.jobs = jobs;
    this.emit = emit;
  }

  async appendLog(ref: AttemptRef, key: string, offset: number, data: Uint8Array, _now: number): Promise<{ size: number; cancel: boolean }> {
    const result = this.db.write(() => {
      const { cancelRequested } = this.jobs.assertLive(ref);
      const where = { id: ref.jobId, attempt: ref.attempt, key };
      let entry = this.db.get<{ size: number }>("SELECT size FROM entries WHERE job_id = $id AND attempt = $attempt AND key = $key", where);
      if (!entry) {
        // Entries are made when first used; an append may come before its step's start.
        this.jobs.ensureEntry(ref, key);
        entry = this.db.get<{ size: number }>("SELECT size FROM entries WHERE job_id = $id AND attempt = $attempt AND key = $key", where);
      }
      if (!entry) throw new NotFoundError(`job ${ref.jobId} has no log entry "${key}"`);
      const size = Number(entry.size);
      if (offset > size) throw new ConflictError(`log entry "${key}" has ${size} bytes; an append at ${offset} would leave a gap`);
      const fresh = data.subarray(Math.min(size - offset, data.byteLength));
      if (fresh.byteLength === 0) return { size, cancel: cancelRequested, grew: false };
      this.db.run(
        "INSERT INTO log_chunks (job_id, attempt, key, start_offset, end_offset, data) VALUES ($id, $attempt, $key, $start, $end, $data)",
        { id: ref.jobId, attempt: ref.attempt, key, start: size, end: size + fresh.byteLength, data: fresh },
      );
      this.db.run("UPDATE entries SET size = $size WHERE job_id = $id AND attempt = $attempt AND key = $key", {
        size: size + fresh.byteLength,
        id: ref.jobId,
        attempt: ref.attempt,
        key,
      });
      return { size: size + fresh.byteLength, cancel: cancelRequested, grew: true };
    });
    if (result.grew) this.emit({ kind: "job", jobId: ref.jobId });
    return { size: result.size, cancel: result.cancel };
  }

  async readLog(jobId: number, attempt: number, key: string, offset: number, limit: number): Promise<Uint8Array> {
    const end = offset + limit;
    const rows = this.db.all<{ start_offset: number; data: Uint8Array }>(
      `SELECT start_offset, data FROM log_chunks WHERE job_id = $id AND attempt = $attempt AND key = $key
         AND end_offset > $from AND start_offset < $to ORDER BY start_offset`,
      { id: jobId, attempt, key, from: offset, to: end },
    );
    const parts = rows.map((row) => {
      const start = Number(row.start_offset);
      return Buffer.from(row.data).subarray(Math.max(0, offset - start), Math.max(0, end - start));
    });
    return Buffer.concat(parts);
  }

  async putArtifact(ref: AttemptRef, name: string, data: AsyncIterable<Uint8Array>, now: number): Promise<ArtifactRecord> {
    const where = { id: ref.jobId, attempt: ref.attempt, name };
    this.db.write(() => {
      this.jobs.assertLive(ref);
      this.db.run("DELETE FROM artifact_chunks WHERE job_id = $id AND attempt = $attempt AND name = $name", where);
      this.db.run("DELETE FROM artifacts WHERE job_id = $id AND attempt = $attempt AND name = $name", where);
    });
    const hash = createHash("sha256");
    let size = 0;
    let seq = 0;
    try {
      for await (const chunk of rechunk(data, ARTIFACT_CHUNK)) {
        hash.update(chunk);
        size += chunk.byteLength;
        this.db.run("INSERT INTO artifact_chunks (job_id, attempt, name, seq, data) VALUES ($id, $attempt, $name, $seq, $data)", {
          ...where,
          seq,
          data: chunk,
        });
        seq += 1;
      }
      const record: ArtifactRecord = { name, size, sha256: hash.digest("hex"), createdAt: now };
      this.db.write(() => {
        this.jobs.assertLive(ref);
        this.db.run(
          "INSERT INTO artifacts (job_id, attempt, name, size, sha256, created_at) VALUES ($id, $attempt, $name, $size, $sha, $now)",
          { ...where, size: record.size, sha: record.sha256, now },
        );
      });
      this.emit({ kind: "job", jobId: ref.jobId });
      return record;
    } catch (error) {
      this.db.run("DELETE FROM artifact_chunks WHERE job_id = $id AND attempt = $attempt AND name = $name", where);
      throw error;
    }
  }

  async readArtifact(jobId: number, name: string): Promise<{ record: ArtifactRecord; chunks: AsyncIterable<Uint8Array> } | undefined> {
    const row = this.db.get<{ attempt: number; size: number; sha256: string; created_at: number }>(
      `SELECT a.attempt, a.size, a.sha256, a.created_at FROM artifacts a JOIN jobs j ON j.id = a.job_id AND j.attempt = a.attempt
       WHERE a.job_id = $id AND a.name = $name`,
      { id: jobId, name },
    );
    if (!row) return undefined;
    const attempt = Number(row.attempt);
    const db = this.db;
    async function* chunks(): AsyncIterable<Uint8Array> {
      for (let seq = 0; ; seq += 1) {
        const chunk = db.get<{ data: Uint8Array }>("SELECT data FROM artifact_chunks WHERE job_id = $id AND attempt = $attempt AND name = $name AND seq = $seq", {
          id: jobId,
          attempt,
          name,
          seq,
        });
        if (!chunk) return;
        yield chunk.data;
      }
    }
    return { record: { name, size: Number(row.size), sha256: row.sha256, createdAt: Number(row.created_at) }, chunks: chunks() };
  }
}
