/**
 * Re-sealing stored secrets (jobs' and batch versions') under a new key (`airlock server rotate-secrets-key`). Safe while
 * coordinators run: each value is replaced only if it is still sealed as it was read (a job that
 * ended meanwhile has simply lost its secrets), and a coordinator given the old key as
 * --previous-secrets-key-file keeps opening values not yet re-sealed.
 */
import type { Store } from "../../store/index.ts";
import { open, PLAINTEXT_KEY_ID, seal, SecretKeyError, type SecretKey } from "./keyring.ts";

export interface RotationReport {
  /** Values now sealed under the new key (unencrypted ones included). */
  resealed: number;
  /** Already under the new key (a rerun, or sealed by a coordinator that has it). */
  alreadyNew: number;
  /** Gone or changed while rotating (their jobs ended). */
  vanished: number;
  /** Sealed under a key that was not given, by key id: left as they are. */
  unknown: Record<string, number>;
}

export async function rotateSecretsKey(store: Store, oldKeys: readonly SecretKey[], newKey: SecretKey): Promise<RotationReport> {
  const report: RotationReport = { resealed: 0, alreadyNew: 0, vanished: 0, unknown: {} };
  for (const stored of await store.secrets.list()) {
    if (stored.keyId === newKey.id) {
      report.alreadyNew += 1;
      continue;
    }
    if (stored.keyId !== PLAINTEXT_KEY_ID && !oldKeys.some((key) => key.id === stored.keyId)) {
      report.unknown[stored.keyId] = (report.unknown[stored.keyId] ?? 0) + 1;
      continue;
    }
    let value: string;
    try {
      value = open(oldKeys, stored);
    } catch (error) {
      if (error instanceof SecretKeyError) {
        report.unknown[stored.keyId] = (report.unknown[stored.keyId] ?? 0) + 1;
        continue;
      }
      throw error;
    }
    if (await store.secrets.reseal(stored.owner, stored, seal(newKey, stored.name, value))) report.resealed += 1;
    else report.vanished += 1;
  }
  return report;
}
