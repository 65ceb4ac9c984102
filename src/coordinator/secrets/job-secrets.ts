/**
 * The coordinator's side of job secrets: sealing a spec's values before it is stored, and opening
 * them only for the payload an executor receives at dequeue. A coordinator without a key refuses
 * jobs with secrets unless it was allowed to keep them unencrypted (--allow-plaintext-secrets).
 */
import { batchSecretValues, secretValues, ValidationError, withBatchSecretValues, withSecretValues, type JobSpec } from "../../protocol/index.ts";
import type { JobRecord, NewJob, SealedSecret, Store } from "../../store/index.ts";
import { open, plaintext, seal, SecretKeyError, type SecretKey } from "./keyring.ts";

export interface JobSecretsOptions {
  store: Store;
  /** The key new secrets are sealed with; undefined: none given. */
  key: SecretKey | undefined;
  /** Keys that still open values sealed before a rotation (they seal nothing). */
  previousKeys?: readonly SecretKey[] | undefined;
  allowPlaintext: boolean;
}

export class JobSecrets {
  private readonly options: JobSecretsOptions;

  constructor(options: JobSecretsOptions) {
    this.options = options;
  }

  /** How new secrets are kept, for the startup log. */
  get mode(): string {
    if (this.options.key) return `sealed with key ${this.options.key.id}`;
    return this.options.allowPlaintext ? "stored unencrypted (--allow-plaintext-secrets)" : "refused (no --secrets-key-file)";
  }

  /** Throws a ValidationError naming the first secret when this coordinator may not keep the spec's secrets. */
  check(spec: JobSpec): void {
    this.refuseUnkept(secretValues(spec));
  }

  private refuseUnkept(values: ReadonlyMap<string, string>): void {
    if (values.size === 0 || this.options.key || this.options.allowPlaintext) return;
    const field = [...values.keys()][0] as string;
    throw new ValidationError(
      `${field}: this coordinator refuses jobs with secrets: it has no key to encrypt them at rest (start it with --secrets-key-file, or with --allow-plaintext-secrets to store them unencrypted)`,
      { field },
    );
  }

  /** What to store for a spec: the spec (the store masks it) and its values, sealed. */
  seal(spec: JobSpec): Pick<NewJob, "spec" | "secrets"> {
    return { spec, secrets: this.sealAll(secretValues(spec)) };
  }

  /** The sealed values of a batch spec's `job.secrets`, for its stored version. */
  sealBatch(spec: unknown): SealedSecret[] {
    return this.sealAll(batchSecretValues(spec));
  }

  private sealAll(values: ReadonlyMap<string, string>): SealedSecret[] {
    this.refuseUnkept(values);
    const { key } = this.options;
    return [...values].map(([name, value]) => (key ? seal(key, name, value) : plaintext(name, value)));
  }

  /** A stored batch version's spec with its secret values opened (to queue its jobs again). */
  async revealBatch<T>(batchId: number, version: number, spec: T): Promise<T> {
    const sealed = await this.options.store.batches.versionSecrets(batchId, version);
    const values = new Map(sealed.map((secret) => [secret.name, open(this.keys(), secret)]));
    const opened = withBatchSecretValues(spec, values);
    if (opened.missing.length > 0) throw new SecretKeyError(`batch version ${version} has no stored value for ${opened.missing.join(", ")}`);
    return opened.spec;
  }

  private keys(): SecretKey[] {
    return [...(this.options.key ? [this.options.key] : []), ...(this.options.previousKeys ?? [])];
  }

  /** The job's spec with its secret values opened: for the executor that claimed it, and no one else. */
  async reveal(job: JobRecord): Promise<JobSpec> {
    // A spec that names no secret has nothing stored to open: no store read on the dequeue path.
    if (Object.keys(job.spec.secrets).length === 0 && !job.spec.registryAuth) return job.spec;
    const sealed = await this.options.store.secrets.forJob(job.id);
    const values = new Map(sealed.map((secret) => [secret.name, open(this.keys(), secret)]));
    const { spec, missing } = withSecretValues(job.spec, values);
    if (missing.length > 0) throw new SecretKeyError(`job ${job.id} has no stored value for ${missing.join(", ")}`);
    return spec;
  }
}
