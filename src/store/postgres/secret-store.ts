/** Sealed job secrets in Postgres (written by enqueue, deleted by the job_secrets_end trigger). */
import type { SealedSecret, SecretStore, StoredSecret } from "../store.ts";
import { toSealed, type SecretRow } from "../secret-rows.ts";
import type { PostgresDatabase } from "./database.ts";

export class PostgresSecretStore implements SecretStore {
  private readonly db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.db = db;
  }

  async forJob(jobId: number): Promise<SealedSecret[]> {
    const rows = await this.db.query<SecretRow & { job_id: string }>("SELECT name, key_id, nonce, ciphertext FROM job_secrets WHERE job_id = $1 ORDER BY name", [jobId], "airlock_job_secrets");
    return rows.map(toSealed);
  }

  async list(): Promise<StoredSecret[]> {
    const rows = await this.db.query<SecretRow & { job_id: string }>("SELECT job_id, name, key_id, nonce, ciphertext FROM job_secrets ORDER BY job_id, name");
    return rows.map((row) => ({ jobId: Number(row.job_id), ...toSealed(row) }));
  }

  async reseal(jobId: number, current: SealedSecret, next: SealedSecret): Promise<boolean> {
    const rows = await this.db.query<{ name: string }>(
      `UPDATE job_secrets SET key_id = $5, nonce = $6, ciphertext = $7
       WHERE job_id = $1 AND name = $2 AND key_id = $3 AND nonce = $4 RETURNING name`,
      [jobId, current.name, current.keyId, Buffer.from(current.nonce), next.keyId, Buffer.from(next.nonce), Buffer.from(next.ciphertext)],
    );
    return rows.length === 1;
  }
}
