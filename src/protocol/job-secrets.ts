/**
 * The secret values of a job spec, by name: its `secrets` ("secrets.<NAME>") and its registry
 * passwords ("registryAuth.<host>"). The coordinator stores a spec masked (maskSecrets) and these
 * values sealed on their own, and puts them back only into the payload an executor receives.
 */
import { SECRET_MASK, type JobSpec } from "./job-spec.ts";

export function secretValues(spec: JobSpec): Map<string, string> {
  const values = new Map<string, string>();
  for (const [name, value] of Object.entries(spec.secrets)) values.set(`secrets.${name}`, value);
  for (const [host, auth] of Object.entries(spec.registryAuth ?? {})) values.set(`registryAuth.${host}`, auth.password);
  return values;
}

/** The names secretValues gives for `spec` (which a masked spec still has). */
export function secretNames(spec: JobSpec): string[] {
  return [...secretValues(spec).keys()];
}

/** `spec` with its secret values put back from `values`; undefined names a missing one. */
export function withSecretValues(spec: JobSpec, values: ReadonlyMap<string, string>): { spec: JobSpec; missing: string[] } {
  const missing: string[] = [];
  const value = (name: string): string => {
    const found = values.get(name);
    if (found === undefined) missing.push(name);
    return found ?? "";
  };
  const secrets = Object.fromEntries(Object.keys(spec.secrets).map((name) => [name, value(`secrets.${name}`)]));
  const registryAuth = spec.registryAuth
    ? Object.fromEntries(Object.entries(spec.registryAuth).map(([host, auth]) => [host, { ...auth, password: value(`registryAuth.${host}`) }]))
    : undefined;
  return { spec: { ...spec, secrets, ...(registryAuth ? { registryAuth } : {}) }, missing };
}

/** A stored batch spec's shape as far as secrets go: `job.secrets`, passed to each of its jobs. */
interface WithJobSecrets {
  job?: { secrets?: unknown } | undefined;
}

function batchSecrets(spec: unknown): Record<string, string> {
  const secrets = (spec as WithJobSecrets | null)?.job?.secrets;
  if (!secrets || typeof secrets !== "object") return {};
  return Object.fromEntries(Object.entries(secrets as Record<string, unknown>).filter((entry): entry is [string, string] => typeof entry[1] === "string"));
}

/** A batch spec's secret values by name ("secrets.<NAME>", as its jobs name them). */
export function batchSecretValues(spec: unknown): Map<string, string> {
  return new Map(Object.entries(batchSecrets(spec)).map(([name, value]) => [`secrets.${name}`, value]));
}

/** The batch spec and its text with every secret value replaced by the mask (names kept). */
export function maskBatchSecrets<T>(spec: T, text: string): { spec: T; specText: string } {
  const secrets = batchSecrets(spec);
  const names = Object.keys(secrets);
  if (names.length === 0) return { spec, specText: text };
  let specText = text;
  // Longest first, so a value inside another is not masked piecemeal.
  for (const value of Object.values(secrets).sort((a, b) => b.length - a.length)) if (value.length > 0) specText = specText.split(value).join(SECRET_MASK);
  const job = (spec as WithJobSecrets).job ?? {};
  return { spec: { ...spec, job: { ...job, secrets: Object.fromEntries(names.map((name) => [name, SECRET_MASK])) } }, specText };
}

/** A masked batch spec with its secret values put back; `missing` names any without one. */
export function withBatchSecretValues<T>(spec: T, values: ReadonlyMap<string, string>): { spec: T; missing: string[] } {
  const names = Object.keys(batchSecrets(spec));
  if (names.length === 0) return { spec, missing: [] };
  const missing = names.filter((name) => !values.has(`secrets.${name}`));
  const job = (spec as WithJobSecrets).job ?? {};
  return { spec: { ...spec, job: { ...job, secrets: Object.fromEntries(names.map((name) => [name, values.get(`secrets.${name}`) ?? ""])) } }, missing };
}
