/**
 * Sealed secrets in SQLite: jobs' (written by enqueue, deleted by the job_secrets_end trigger) and
 * batch versions' (written by createVersion).
 */
import type { SealedSecret, SecretOwner, SecretStore, StoredSecret } from "../store.ts";
import { toSealed, toStored, type SecretRow } from "../secret-rows.ts";
import type { SqliteDatabase } from "./database.ts";

export class SqliteSecretStore implements SecretStore {
  private readonly db: SqliteDatabase;

  constructor(db: SqliteDatabase) {
    this.db = db;
  }

  async forJob(jobId: number): Promise<SealedSecret[]> {
    return this.db.all<SecretRow>("SELECT name, key_id, nonce, ciphertext FROM job_secrets WHERE job_id = $id ORDER BY name", { id: jobId }).map(toSealed);
  }

  async list(): Promise<StoredSecret[]> {
    return this.db
      .all<SecretRow>(
        `SELECT job_id, NULL AS batch_id, NULL AS version, name, key_id, nonce, ciphertext FROM job_secrets
         UNION ALL SELECT NULL, batch_id, version, name, key_id, nonce, ciphertext FROM batch_secrets
         ORDER BY job_id, batch_id, version, name`,
      )
      .map(toStored);
  }

  async reseal(owner: SecretOwner, current: SealedSecret, next: SealedSecret): Promise<boolean> {
    const values = { name: current.name, key: current.keyId, nonce: current.nonce, nextKey: next.keyId, nextNonce: next.nonce, nextCiphertext: next.ciphertext };
    const set = "SET key_id = $nextKey, nonce = $nextNonce, ciphertext = $nextCiphertext";
    const { changes } =
      "jobId" in owner
        ? this.db.run(`UPDATE job_secrets ${set} WHERE job_id = $id AND name = $name AND key_id = $key AND nonce = $nonce`, { ...values, id: owner.jobId })
        : this.db.run(`UPDATE batch_secrets ${set} WHERE batch_id = $batch AND version = $version AND name = $name AND key_id = $key AND nonce = $nonce`, {
            ...values,
            batch: owner.batchId,
            version: owner.version,
          });
    return changes === 1;
  }
}
