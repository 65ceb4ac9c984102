/**
 * What enqueue writes for a job's secrets, shared by the backends: the spec with every value
 * masked, and one sealed row per secret name. The store never sees a value in the clear (the
 * coordinator seals them first), and refuses a job whose sealed values do not match its names, so
 * a caller that forgot to seal cannot store a value, nor queue a job that would run without one.
 */
import { AirlockError, maskSecrets, secretNames } from "../protocol/index.ts";
import type { JobSpec } from "../protocol/index.ts";
import type { NewJob, SealedSecret } from "./store.ts";

export function storedSecrets(job: NewJob): { spec: JobSpec; secrets: SealedSecret[] } {
  const names = secretNames(job.spec).sort();
  const sealed = [...(job.secrets ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const given = sealed.map((secret) => secret.name);
  if (names.length !== given.length || names.some((name, index) => name !== given[index])) {
    throw new AirlockError("internal", `enqueue: the sealed secrets (${given.join(", ") || "none"}) do not match the spec's (${names.join(", ") || "none"})`);
  }
  return { spec: maskSecrets(job.spec), secrets: sealed };
}

export interface SecretRow {
  job_id?: number | string | bigint;
  name: string;
  key_id: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

export function toSealed(row: SecretRow): SealedSecret {
  return { name: row.name, keyId: row.key_id, nonce: new Uint8Array(row.nonce), ciphertext: new Uint8Array(row.ciphertext) };
}
