/**
 * What enqueue writes for a job's secrets (and createVersion for a batch's), shared by the
 * backends: the spec with every value masked, and one sealed row per secret name. The store never sees a value in the clear (the
 * coordinator seals them first), and refuses a job whose sealed values do not match its names, so
 * a caller that forgot to seal cannot store a value, nor queue a job that would run without one.
 */
import { AirlockError, batchSecretValues, maskBatchSecrets, maskSecrets, secretNames } from "../protocol/index.ts";
import type { JobSpec } from "../protocol/index.ts";
import type { NewBatchVersion, NewJob, SealedSecret, StoredSecret } from "./store.ts";

export function storedSecrets(job: NewJob): { spec: JobSpec; secrets: SealedSecret[] } {
  return { spec: maskSecrets(job.spec), secrets: matching("enqueue", secretNames(job.spec), job.secrets) };
}

/** The same for a batch version: its spec and text masked, one sealed value per name of `job.secrets`. */
export function storedBatchSecrets(input: NewBatchVersion): { spec: unknown; specText: string; secrets: SealedSecret[] } {
  const secrets = matching("createVersion", [...batchSecretValues(input.spec).keys()], input.secrets);
  return { ...maskBatchSecrets(input.spec, input.specText), secrets };
}

function matching(what: string, expected: string[], given: SealedSecret[] | undefined): SealedSecret[] {
  const names = [...expected].sort();
  const sealed = [...(given ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const got = sealed.map((secret) => secret.name);
  if (names.length !== got.length || names.some((name, index) => name !== got[index])) {
    throw new AirlockError("internal", `${what}: the sealed secrets (${got.join(", ") || "none"}) do not match the spec's (${names.join(", ") || "none"})`);
  }
  return sealed;
}

export interface SecretRow {
  job_id?: number | string | bigint | null;
  batch_id?: number | string | bigint | null;
  version?: number | string | bigint | null;
  name: string;
  key_id: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

export function toSealed(row: SecretRow): SealedSecret {
  return { name: row.name, keyId: row.key_id, nonce: new Uint8Array(row.nonce), ciphertext: new Uint8Array(row.ciphertext) };
}

/** A row of the union of job_secrets and batch_secrets (list()). */
export function toStored(row: SecretRow): StoredSecret {
  const owner = row.job_id !== null && row.job_id !== undefined ? { jobId: Number(row.job_id) } : { batchId: Number(row.batch_id), version: Number(row.version) };
  return { owner, ...toSealed(row) };
}
