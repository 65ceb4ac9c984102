/**
 * The secret values of a job spec, by name: its `secrets` ("secrets.<NAME>") and its registry
 * passwords ("registryAuth.<host>"). The coordinator stores a spec masked (maskSecrets) and these
 * values sealed on their own, and puts them back only into the payload an executor receives.
 */
import type { JobSpec } from "./job-spec.ts";

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
