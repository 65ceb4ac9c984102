/**
 * Logs and artifacts in Postgres, as chunks, so every coordinator serves every job's output.
 *
 * Logs: `airlock_append_log` fences, appends and announces in one round trip; each append is one
 * row [start_offset, end_offset) and `entries.size` is the entry's length, checked under the
 * entry's row lock, which makes a retried append idempotent (an append before its step started
 * first makes the entry's row: entries are made when first used). Artifacts: 1 MiB chunks written
 * as they stream in (each its own statement, no long transaction), made visible only by the final
 * `artifacts` row, written in a transaction that checks the attempt is still live.
 */
import { createHash } from "node:crypto";
import { ConflictError, LeaseLostError, NotFoundError } from "../../protocol/index.ts";
import { rechunk } from "../chunks.ts";
import type { ArtifactRecord, AttemptRef, OutputStore } from "../store.ts";
import type { PostgresDatabase } from "./database.ts";
import type { Announcer } from "./index.ts";
import { assertLive, ensureEntry } from "./job-store.ts";

const ARTIFACT_CHUNK = 1024 * 1024;

export class PostgresOutputStore implements OutputStore {
  private readonly db: PostgresDatabase;
  private readonly announce: Announcer;

  constructor(db: PostgresDatabase, announce: Announcer) {
    this.db = db;
    this.announce = announce;
  }

  async appendLog(ref: AttemptRef, key: string, offset: number, data: Uint8Array, _now: number): Promise<{ size: number; cancel: boolean }> {
    const append = () =>
      this.db.query<{ status: string; size: number | null; cancel: boolean | null }>("SELECT * FROM airlock_append_log($1, $2, $3, $4, $5)", [
        ref.jobId,
        ref.attempt,
        key,
        offset,
        Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      ], "airlock_append_log");
    let row = (await append())[0];
    if (row?.status === "no_entry") {
      // Entries are made when first used; an append may come before its step's start.
      await this.db.tx((client) => ensureEntry(client, ref, key));
      row = (await append())[0];
    }
    const size = Number(row?.size ?? 0);
    switch (row?.status) {
      case "lease_lost":
        throw new LeaseLostError();
      case "no_entry":
        throw new NotFoundError(`job ${ref.jobId} has no log entry "${key}"`);
      case "gap":
        throw new ConflictError(`log entry "${key}" has ${size} bytes; an append at ${offset} would leave a gap`);
      default:
        break;
    }
    if (size > offset) this.announce.committed([{ kind: "job", jobId: ref.jobId }]);
    return { size, cancel: row?.cancel === true };
  }

  async readLog(jobId: number, attempt: number, key: string, offset: number, limit: number): Promise<Uint8Array> {
    const end = offset + limit;
    const rows = await this.db.query<{ start_offset: number; data: Buffer }>(
      `SELECT start_offset, data FROM log_chunks WHERE job_id = $1 AND attempt = $2 AND key = $3
         AND end_offset > $4 AND start_offset < $5 ORDER BY start_offset`,
      [jobId, attempt, key, offset, end],
    );
    return Buffer.concat(rows.map((row) => row.data.subarray(Math.max(0, offset - row.start_offset), Math.max(0, end - row.start_offset))));
  }

  async putArtifact(ref: AttemptRef, name: string, data: AsyncIterable<Uint8Array>, now: number): Promise<ArtifactRecord> {
    const where = [ref.jobId, ref.attempt, name];
    await this.db.tx(async (client) => {
      await assertLive(client, ref);
      await client.query("DELETE FROM artifact_chunks WHERE job_id = $1 AND attempt = $2 AND name = $3", where);
      await client.query("DELETE FROM artifacts WHERE job_id = $1 AND attempt = $2 AND name = $3", where);
    });
    const hash = createHash("sha256");
    let size = 0;
    let seq = 0;
    try {
      for await (const chunk of rechunk(data, ARTIFACT_CHUNK)) {
        hash.update(chunk);
        size += chunk.byteLength;
        await this.db.query("INSERT INTO artifact_chunks (job_id, attempt, name, seq, data) VALUES ($1, $2, $3, $4, $5)", [...where, seq, Buffer.from(chunk)]);
        seq += 1;
      }
      const record: ArtifactRecord = { name, size, sha256: hash.digest("hex"), createdAt: now };
      await this.db.tx(async (client) => {
        await assertLive(client, ref);
        await client.query("INSERT INTO artifacts (job_id, attempt, name, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6)", [
          ...where,
          record.size,
          record.sha256,
          now,
        ]);
      });
      this.announce.committed([{ kind: "job", jobId: ref.jobId }]);
      return record;
    } catch (error) {
      await this.db.query("DELETE FROM artifact_chunks WHERE job_id = $1 AND attempt = $2 AND name = $3", where).catch(() => undefined);
      throw error;
    }
  }

  async readArtifact(jobId: number, name: string): Promise<{ record: ArtifactRecord; chunks: AsyncIterable<Uint8Array> } | undefined> {
    const rows = await this.db.query<{ attempt: number; size: number; sha256: string; created_at: number }>(
      `SELECT a.attempt, a.size, a.sha256, a.created_at FROM artifacts a JOIN jobs j ON j.id = a.job_id AND j.attempt = a.attempt
       WHERE a.job_id = $1 AND a.name = $2`,
      [jobId, name],
    );
    const row = rows[0];
    if (!row) return undefined;
    const db = this.db;
    async function* chunks(): AsyncIterable<Uint8Array> {
      for (let seq = 0; ; seq += 1) {
        const [chunk] = await db.query<{ data: Buffer }>("SELECT data FROM artifact_chunks WHERE job_id = $1 AND attempt = $2 AND name = $3 AND seq = $4", [
          jobId,
          row!.attempt,
          name,
          seq,
        ]);
        if (!chunk) return;
        yield chunk.data;
      }
    }
    return { record: { name, size: row.size, sha256: row.sha256, createdAt: row.created_at }, chunks: chunks() };
  }
}
