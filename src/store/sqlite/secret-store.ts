/** Sealed job secrets in SQLite (written by enqueue, deleted by the job_secrets_end trigger). */
import type { SealedSecret, SecretStore, StoredSecret } from "../store.ts";
import { toSealed, type SecretRow } from "../secret-rows.ts";
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
      .all<SecretRow>("SELECT job_id, name, key_id, nonce, ciphertext FROM job_secrets ORDER BY job_id, name")
      .map((row) => ({ jobId: Number(row.job_id), ...toSealed(row) }));
  }

  async reseal(jobId: number, current: SealedSecret, next: SealedSecret): Promise<boolean> {
    const { changes } = this.db.run(
      `UPDATE job_secrets SET key_id = $nextKey, nonce = $nextNonce, ciphertext = $nextCiphertext
       WHERE job_id = $id AND name = $name AND key_id = $key AND nonce = $nonce`,
      { id: jobId, name: current.name, key: current.keyId, nonce: current.nonce, nextKey: next.keyId, nextNonce: next.nonce, nextCiphertext: next.ciphertext },
    );
    return changes === 1;
  }
}
