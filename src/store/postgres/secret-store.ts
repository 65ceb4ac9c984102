/**
 * Sealed secrets in Postgres: jobs' (written by enqueue, deleted by the job_secrets_end trigger)
 * and batch versions' (written by createVersion).
 */
import type { SealedSecret, SecretOwner, SecretStore, StoredSecret } from "../store.ts";
import { toSealed, toStored, type SecretRow } from "../secret-rows.ts";
import type { PostgresDatabase } from "./database.ts";

export class PostgresSecretStore implements SecretStore {
  private readonly db: PostgresDatabase;

  constructor(db: PostgresDatabase) {
    this.db = db;
  }

  async forJob(jobId: number): Promise<SealedSecret[]> {
    const rows = await this.db.query<SecretRow>("SELECT name, key_id, nonce, ciphertext FROM job_secrets WHERE job_id = $1 ORDER BY name", [jobId], "airlock_job_secrets");
    return rows.map(toSealed);
  }

  async list(): Promise<StoredSecret[]> {
    const rows = await this.db.query<SecretRow>(
      `SELECT job_id, NULL::bigint AS batch_id, NULL::integer AS version, name, key_id, nonce, ciphertext FROM job_secrets
       UNION ALL SELECT NULL, batch_id, version, name, key_id, nonce, ciphertext FROM batch_secrets
       ORDER BY job_id, batch_id, version, name`,
    );
    return rows.map(toStored);
  }

  async reseal(owner: SecretOwner, current: SealedSecret, next: SealedSecret): Promise<boolean> {
    const values = [current.name, current.keyId, Buffer.from(current.nonce), next.keyId, Buffer.from(next.nonce), Buffer.from(next.ciphertext)];
    const set = "SET key_id = $4, nonce = $5, ciphertext = $6";
    const rows =
      "jobId" in owner
        ? await this.db.query(`UPDATE job_secrets ${set} WHERE name = $1 AND key_id = $2 AND nonce = $3 AND job_id = $7 RETURNING name`, [...values, owner.jobId])
        : await this.db.query(`UPDATE batch_secrets ${set} WHERE name = $1 AND key_id = $2 AND nonce = $3 AND batch_id = $7 AND version = $8 RETURNING name`, [...values, owner.batchId, owner.version]);
    return rows.length === 1;
  }
}
