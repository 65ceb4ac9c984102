/**
 * The job spec: what a user submits (YAML or JSON). `JobSpecInput` is what users write;
 * `JobSpec` is the same after parsing, with defaults filled and units converted
 * (durations in ms, sizes in bytes). The coordinator stores the parsed form.
 */
import { z } from "zod";
import { WorkspaceFilePath, WorkspacePath } from "./paths.ts";
import { DurationMs, SizeBytes } from "./units.ts";

/** Isolation levels from weakest to strongest; a job names the least it accepts. */
export const ISOLATION_LEVELS = ["none", "namespace", "container", "gvisor", "vm"] as const;
export const Isolation = z.enum(ISOLATION_LEVELS);
export type Isolation = z.infer<typeof Isolation>;

export function isolationRank(level: Isolation): number {
  return ISOLATION_LEVELS.indexOf(level);
}

/** Keys and names that end up in URLs, file names and log headers. */
export const Identifier = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");

export const QueueName = Identifier;

/** Repository names may have path segments ("acme/web"), each an Identifier. */
export const RepositoryName = z
  .string()
  .max(200)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/,
    "must be segments of letters, digits, '.', '_' or '-' separated by '/'",
  )
  .refine((name) => !name.split("/").some((part) => part === ".." || part.endsWith(".git")), {
    message: "segments may not be '..' or end in '.git'",
  });

export const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid environment variable name");

/** Log entry keys that the executor uses itself; steps may not take them. */
export const RESERVED_ENTRY_KEYS = ["prepare", "finalize"] as const;

/**
 * The normalized spec: units converted, defaults filled, step keys assigned. This is what the
 * coordinator stores and what executors receive; parsing it again yields the same value.
 */
/**
 * Batch step fields (optional; see src/protocol/batch-template.ts): with a job-level `template`,
 * the executor renders each step's commands, env and files with the results of earlier steps,
 * runs it only when `if` renders "true", and records its `outputs`.
 */
export const StepOutputSpec = z.strictObject({
  value: z.string().max(100_000).optional(),
  fromFile: WorkspaceFilePath.optional(),
  format: z.enum(["text", "json"]).default("text"),
});
const StepBatchFields = {
  if: z.string().max(100_000).optional(),
  outputs: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/), StepOutputSpec).optional(),
  /** Paths relative to the step's dir; contents are templates. */
  files: z.record(WorkspaceFilePath, z.string()).optional(),
};

/** The template context of a batch job: what `${{ repository.* }}`, `${{ batch.* }}` and `${{ steps.path }}` render to. */
export const TemplateContextSpec = z.strictObject({
  repository: z.strictObject({ name: z.string(), branch: z.string() }),
  batch: z.strictObject({ name: z.string(), description: z.string() }),
  /** The workspace directory ("." for the repository root). */
  path: z.string(),
});
export type TemplateContextSpec = z.infer<typeof TemplateContextSpec>;

/**
 * A package cache the executor lends the step (docs/indexing.md): `npm` gives it a copy of the
 * executor's verified npm tarballs as its npm cache, and keeps what it adds once verified.
 */
export const StepCache = z.enum(["npm"]);
export type StepCache = z.infer<typeof StepCache>;

export const StepSpec = z.strictObject({
  key: Identifier,
  cache: StepCache.optional(),
  image: z.string().min(1).max(512).optional(),
  commands: z.array(z.string()).min(1),
  dir: WorkspacePath,
  env: z.record(EnvName, z.string()),
  timeoutMs: z.number().int().positive().optional(),
  ...StepBatchFields,
});
export type StepSpec = z.infer<typeof StepSpec>;

export const FileSpec = z.strictObject({
  content: z.string(),
  encoding: z.enum(["utf8", "base64"]).default("utf8"),
  mode: z.number().int().min(0).max(0o777).optional(),
});

export const ResourceLimits = z.strictObject({
  cpus: z.number().positive().max(1024).optional(),
  memoryBytes: z.number().int().positive().optional(),
  pids: z.number().int().min(8).max(1_000_000).optional(),
  diskBytes: z.number().int().positive().optional(),
  /** Bytes through the egress gateway, both ways, for the whole job. */
  egressBytes: z.number().int().positive().optional(),
  /** Gateway connections open at once. */
  connections: z.number().int().min(1).max(4096).optional(),
});
export type ResourceLimits = z.infer<typeof ResourceLimits>;

/**
 * Network a job asks for: none at all, or the public internet through the executor's egress
 * gateway, optionally narrowed to `allow` (CIDRs, addresses, `host` or `host:port`; see
 * docs/network.md). The executor parses the entries and fails the job on one it cannot read.
 */
export const NETWORK_MODES = ["none", "internet"] as const;
export const NetworkMode = z.enum(NETWORK_MODES);
export type NetworkMode = z.infer<typeof NetworkMode>;

export function networkRank(mode: NetworkMode): number {
  return NETWORK_MODES.indexOf(mode);
}

export const EgressRuleText = z
  .string()
  .min(1)
  .max(300)
  .regex(/^[A-Za-z0-9.:/[\]*_%-]+$/, "must be a CIDR, an address, a host name or host:port");

export const NetworkSpec = z.strictObject({
  mode: NetworkMode,
  /** Only these destinations (within what the executor allows); absent: all the executor allows. */
  allow: z.array(EgressRuleText).min(1).max(200).optional(),
});
export type NetworkSpec = z.infer<typeof NetworkSpec>;

const NetworkInput = z.union([NetworkMode, z.strictObject({ allow: z.array(EgressRuleText).min(1, "allow needs at least one entry").max(200) })]);

function normalizeNetwork(input: z.infer<typeof NetworkInput>): NetworkSpec {
  return typeof input === "string" ? { mode: input } : { mode: "internet", allow: input.allow };
}

export const RegistryAuth = z.strictObject({
  username: z.string(),
  password: z.string(),
});

const MAX_FILES = 1000;

const FilesSchema = z.record(z.string(), FileSpec).superRefine((files, ctx) => {
  const names = Object.keys(files);
  if (names.length > MAX_FILES) ctx.addIssue({ code: "custom", message: `at most ${MAX_FILES} files` });
  for (const name of names) {
    const parsed = WorkspaceFilePath.safeParse(name);
    if (!parsed.success) ctx.addIssue({ code: "custom", path: [name], message: parsed.error.issues[0]?.message ?? "bad path" });
  }
});

export const JobSpec = z.strictObject({
  queue: QueueName,
  repository: RepositoryName.optional(),
  commit: z.string().min(1).max(256).optional(),
  shallowClone: z.boolean(),
  fetchTags: z.boolean(),
  sparseCheckout: z.array(z.string().min(1).max(1024)).max(1000).optional(),
  files: FilesSchema,
  steps: z.array(StepSpec).min(1, "a job needs at least one step").max(100),
  secrets: z.record(EnvName, z.string().min(1)),
  resources: ResourceLimits,
  timeoutMs: z.number().int().positive(),
  isolation: Isolation,
  /** Specs stored before jobs had a network had none. */
  network: NetworkSpec.default({ mode: "none" }),
  outputs: z.strictObject({
    diff: z.boolean(),
    paths: z.array(WorkspaceFilePath).max(100),
    /** Limit the diff to these directories (a monorepo workspace). */
    diffPaths: z.array(WorkspacePath).max(100).optional(),
  }),
  maxAttempts: z.number().int().min(1).max(10),
  /** Registry credentials by registry host, for runtimes that pull images. */
  registryAuth: z.record(z.string(), RegistryAuth).optional(),
  /** Set for batch jobs: steps are templates rendered by the executor (see StepBatchFields). */
  template: TemplateContextSpec.optional(),
});
export type JobSpec = z.infer<typeof JobSpec>;

/** What users write: units as text ("10m", "512m"), most fields optional. */
export const JobSpecInput = z
  .strictObject({
    queue: QueueName.default("default"),
    repository: RepositoryName.optional(),
    commit: z.string().min(1).max(256).optional(),
    shallowClone: z.boolean().default(true),
    fetchTags: z.boolean().default(false),
    sparseCheckout: z.array(z.string().min(1).max(1024)).max(1000).optional(),
    files: FilesSchema.default({}),
    steps: z
      .array(
        z.strictObject({
          key: Identifier.optional(),
          cache: StepCache.optional(),
          image: z.string().min(1).max(512).optional(),
          commands: z.union([z.string().min(1), z.array(z.string()).min(1)]),
          dir: WorkspacePath.default("."),
          env: z.record(EnvName, z.string()).default({}),
          timeout: DurationMs.optional(),
          ...StepBatchFields,
        }),
      )
      .min(1, "a job needs at least one step")
      .max(100),
    secrets: z.record(EnvName, z.string().min(1)).default({}),
    resources: z
      .strictObject({
        cpus: z.number().positive().max(1024).optional(),
        memory: SizeBytes.optional(),
        pids: z.number().int().min(8).max(1_000_000).optional(),
        disk: SizeBytes.optional(),
        egress: SizeBytes.optional(),
        connections: z.number().int().min(1).max(4096).optional(),
      })
      .default({}),
    // zod applies defaults to the output: milliseconds.
    timeout: DurationMs.default(30 * 60_000),
    isolation: Isolation.default("namespace"),
    network: NetworkInput.default("internet"),
    outputs: z
      .strictObject({
        diff: z.boolean().default(false),
        paths: z.array(WorkspaceFilePath).max(100).default([]),
        diffPaths: z.array(WorkspacePath).max(100).optional(),
      })
      .default({ diff: false, paths: [] }),
    maxAttempts: z.number().int().min(1).max(10).default(3),
    registryAuth: z.record(z.string(), RegistryAuth).optional(),
    template: TemplateContextSpec.optional(),
  })
  .superRefine((spec, ctx) => {
    if (spec.commit !== undefined && spec.repository === undefined) {
      ctx.addIssue({ code: "custom", path: ["commit"], message: "commit needs a repository" });
    }
    if (spec.repository === undefined && (spec.outputs.diff || spec.sparseCheckout)) {
      ctx.addIssue({ code: "custom", path: ["repository"], message: "outputs.diff and sparseCheckout need a repository" });
    }
    const seen = new Set<string>();
    spec.steps.forEach((step, index) => {
      const key = step.key ?? `step-${index + 1}`;
      if ((RESERVED_ENTRY_KEYS as readonly string[]).includes(key)) {
        ctx.addIssue({ code: "custom", path: ["steps", index, "key"], message: `"${key}" is reserved` });
      }
      if (seen.has(key)) ctx.addIssue({ code: "custom", path: ["steps", index, "key"], message: `duplicate step key "${key}"` });
      seen.add(key);
    });
  })
  .transform(
    (spec): JobSpec => ({
      queue: spec.queue,
      ...(spec.repository !== undefined ? { repository: spec.repository } : {}),
      ...(spec.repository !== undefined ? { commit: spec.commit ?? "HEAD" } : {}),
      shallowClone: spec.shallowClone,
      fetchTags: spec.fetchTags,
      ...(spec.sparseCheckout ? { sparseCheckout: spec.sparseCheckout } : {}),
      files: spec.files,
      steps: spec.steps.map((step, index) => ({
        key: step.key ?? `step-${index + 1}`,
        ...(step.cache !== undefined ? { cache: step.cache } : {}),
        ...(step.image !== undefined ? { image: step.image } : {}),
        commands: typeof step.commands === "string" ? [step.commands] : step.commands,
        dir: step.dir,
        env: step.env,
        ...(step.timeout !== undefined ? { timeoutMs: step.timeout } : {}),
        ...(step.if !== undefined ? { if: step.if } : {}),
        ...(step.outputs !== undefined ? { outputs: step.outputs } : {}),
        ...(step.files !== undefined ? { files: step.files } : {}),
      })),
      secrets: spec.secrets,
      resources: {
        ...(spec.resources.cpus !== undefined ? { cpus: spec.resources.cpus } : {}),
        ...(spec.resources.memory !== undefined ? { memoryBytes: spec.resources.memory } : {}),
        ...(spec.resources.pids !== undefined ? { pids: spec.resources.pids } : {}),
        ...(spec.resources.disk !== undefined ? { diskBytes: spec.resources.disk } : {}),
        ...(spec.resources.egress !== undefined ? { egressBytes: spec.resources.egress } : {}),
        ...(spec.resources.connections !== undefined ? { connections: spec.resources.connections } : {}),
      },
      timeoutMs: spec.timeout,
      isolation: spec.isolation,
      network: normalizeNetwork(spec.network),
      outputs: { diff: spec.outputs.diff, paths: spec.outputs.paths, ...(spec.outputs.diffPaths ? { diffPaths: spec.outputs.diffPaths } : {}) },
      maxAttempts: spec.maxAttempts,
      ...(spec.registryAuth ? { registryAuth: spec.registryAuth } : {}),
      ...(spec.template ? { template: spec.template } : {}),
    }),
  );
export type JobSpecInput = z.input<typeof JobSpecInput>;

/** Secrets replaced by this marker wherever a spec is shown to users. */
export const SECRET_MASK = "********";

export function maskSecrets(spec: JobSpec): JobSpec {
  const secrets = Object.fromEntries(Object.keys(spec.secrets).map((name) => [name, SECRET_MASK]));
  const registryAuth = spec.registryAuth
    ? Object.fromEntries(Object.entries(spec.registryAuth).map(([host, auth]) => [host, { ...auth, password: SECRET_MASK }]))
    : undefined;
  return { ...spec, secrets, ...(registryAuth ? { registryAuth } : {}) };
}
