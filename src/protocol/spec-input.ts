/**
 * A stored (normalized) job spec turned back into what a user submits, so a job can be run
 * again: `JobSpecInput.parse(specToInput(spec))` equals `spec`. Type imports only, so the web
 * UI can bundle this without zod.
 */
import type { JobSpec, JobSpecInput } from "./job-spec.ts";

export function specToInput(spec: JobSpec): JobSpecInput {
  const { resources } = spec;
  return {
    queue: spec.queue,
    ...(spec.repository !== undefined ? { repository: spec.repository } : {}),
    ...(spec.commit !== undefined ? { commit: spec.commit } : {}),
    shallowClone: spec.shallowClone,
    fetchTags: spec.fetchTags,
    ...(spec.sparseCheckout ? { sparseCheckout: spec.sparseCheckout } : {}),
    files: spec.files,
    steps: spec.steps.map((step) => ({
      key: step.key,
      ...(step.cache !== undefined ? { cache: step.cache } : {}),
      ...(step.image !== undefined ? { image: step.image } : {}),
      commands: step.commands,
      dir: step.dir,
      env: step.env,
      // A bare number would be read as seconds.
      ...(step.timeoutMs !== undefined ? { timeout: `${step.timeoutMs}ms` } : {}),
      ...(step.if !== undefined ? { if: step.if } : {}),
      ...(step.outputs !== undefined ? { outputs: step.outputs } : {}),
      ...(step.files !== undefined ? { files: step.files } : {}),
    })),
    secrets: spec.secrets,
    resources: {
      ...(resources.cpus !== undefined ? { cpus: resources.cpus } : {}),
      ...(resources.memoryBytes !== undefined ? { memory: resources.memoryBytes } : {}),
      ...(resources.pids !== undefined ? { pids: resources.pids } : {}),
      ...(resources.diskBytes !== undefined ? { disk: resources.diskBytes } : {}),
    },
    timeout: `${spec.timeoutMs}ms`,
    isolation: spec.isolation,
    outputs: spec.outputs,
    maxAttempts: spec.maxAttempts,
    ...(spec.registryAuth ? { registryAuth: spec.registryAuth } : {}),
    ...(spec.template ? { template: spec.template } : {}),
  };
}

/** Names of the values a shown spec hides: secrets, and registry passwords by host. */
export function hiddenValues(spec: JobSpec): { secrets: string[]; registryHosts: string[] } {
  return { secrets: Object.keys(spec.secrets), registryHosts: Object.keys(spec.registryAuth ?? {}) };
}
