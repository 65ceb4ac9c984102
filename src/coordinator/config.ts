/** The coordinator's configuration, built once from flags, env and defaults, then frozen. */
import { resolve } from "node:path";
import { ConfigSource, parseListen, type Env, type Flags } from "../common/config-source.ts";
import type { LogLevel } from "../common/logger.ts";
import { QueueName, ValidationError } from "../protocol/index.ts";
import { resolveTokens, type TokenSources } from "./token-store.ts";

export interface CoordinatorConfig {
  host: string;
  port: number;
  /** Where the SQLite file, repository mirrors and generated tokens live. */
  dataDir: string;
  /** Given tokens and token files; when there are none, one is generated into the data dir on first start. */
  executorTokens: TokenSources;
  apiTokens: TokenSources;
  tls: { certPath: string; keyPath: string } | undefined;
  databaseUrl: string | undefined;
  /** Relative share of dequeues for each queue among the non-empty queues an executor serves (default 1). */
  queueWeights: Readonly<Record<string, number>>;
  /** A lease lapses after this long without a heartbeat. */
  leaseMs: number;
  /** How often lapsed leases are looked for. */
  reapIntervalMs: number;
  /** Longest a dequeue may be held open. */
  maxDequeueWaitMs: number;
  /** Limit for JSON request bodies (job specs). */
  maxBodyBytes: number;
  /** Limit for one log append request. */
  maxLogChunkBytes: number;
  maxArtifactBytes: number;
  logLevel: LogLevel;
  logFormat: "text" | "json";
  /** Directory of the built web UI; undefined means the one built into this package (web/dist). */
  webDir: string | undefined;
  /**
   * A git credential helper for pushing applied batch branches to origins that need credentials
   * (e.g. "store --file=/etc/airlock/git-credentials"); git runs it, so no secret is in a log.
   */
  gitCredentialHelper: string | undefined;
  /** The 256-bit key job secrets are sealed with at rest (a file only its owner may read). */
  secretsKeyFile: string | undefined;
  /** Keys of before a rotation: they open values not yet re-sealed, and seal nothing. */
  previousSecretsKeyFiles: readonly string[];
  /** Without a key, store secrets unencrypted instead of refusing jobs that have any. */
  allowPlaintextSecrets: boolean;
  /** Fetch every auto-indexed repository this often (docs/indexing.md); undefined: never on a timer. */
  syncIntervalMs: number | undefined;
  /** Size cap of the pack cache in `<data>/pack-cache` (see services/pack-cache.ts); 0: off. */
  gitPackCacheMaxBytes: number;
  /** The host environment git runs with (PATH only). */
  hostEnv: Readonly<Record<string, string | undefined>>;
}

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

export function resolveCoordinatorConfig(flags: Flags, env: Env): Readonly<CoordinatorConfig> {
  const source = new ConfigSource(flags, env);
  const { host, port } = parseListen(source.string("listen", "AIRLOCK_LISTEN", "127.0.0.1:7780"));
  const certPath = source.string("tlsCert", "AIRLOCK_TLS_CERT");
  const keyPath = source.string("tlsKey", "AIRLOCK_TLS_KEY");
  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new ValidationError("--tls-cert and --tls-key go together: give both or neither", { field: "tlsCert" });
  }
  const leaseMs = source.durationMs("leaseTimeout", "AIRLOCK_LEASE_TIMEOUT", "20s");
  return Object.freeze({
    host,
    port,
    dataDir: resolve(source.string("data", "AIRLOCK_DATA", ".airlock")),
    executorTokens: tokenSources(source, "executorToken", "AIRLOCK_EXECUTOR_TOKEN"),
    apiTokens: tokenSources(source, "apiToken", "AIRLOCK_API_TOKEN"),
    tls: certPath && keyPath ? { certPath: resolve(certPath), keyPath: resolve(keyPath) } : undefined,
    databaseUrl: source.string("database", "AIRLOCK_DATABASE_URL"),
    queueWeights: parseQueueWeights(source.raw("queueWeights", "AIRLOCK_QUEUE_WEIGHTS")),
    leaseMs,
    reapIntervalMs: Math.max(100, Math.min(5000, Math.floor(leaseMs / 4))),
    maxDequeueWaitMs: source.durationMs("maxDequeueWait", "AIRLOCK_MAX_DEQUEUE_WAIT", "25s"),
    maxBodyBytes: source.sizeBytes("maxBodySize", "AIRLOCK_MAX_BODY_SIZE", "8m"),
    maxLogChunkBytes: source.sizeBytes("maxLogChunk", "AIRLOCK_MAX_LOG_CHUNK", "8m"),
    maxArtifactBytes: source.sizeBytes("maxArtifactSize", "AIRLOCK_MAX_ARTIFACT_SIZE", "1g"),
    logLevel: source.oneOf("logLevel", "AIRLOCK_LOG_LEVEL", LOG_LEVELS, "info"),
    logFormat: source.oneOf("logFormat", "AIRLOCK_LOG_FORMAT", ["text", "json"] as const, "text"),
    webDir: optionalPath(source.string("webDir", "AIRLOCK_WEB_DIR")),
    gitCredentialHelper: source.string("gitCredentialHelper", "AIRLOCK_GIT_CREDENTIAL_HELPER"),
    secretsKeyFile: optionalPath(source.string("secretsKeyFile", "AIRLOCK_SECRETS_KEY_FILE")),
    previousSecretsKeyFiles: Object.freeze(source.list("previousSecretsKeyFile", "AIRLOCK_PREVIOUS_SECRETS_KEY_FILE", []).map((path) => resolve(path))),
    allowPlaintextSecrets: source.flag("allowPlaintextSecrets", "AIRLOCK_ALLOW_PLAINTEXT_SECRETS"),
    syncIntervalMs: syncInterval(source),
    gitPackCacheMaxBytes: source.string("gitPackCacheMax", "AIRLOCK_GIT_PACK_CACHE_MAX") === "off" ? 0 : source.sizeBytes("gitPackCacheMax", "AIRLOCK_GIT_PACK_CACHE_MAX", "2g"),
    hostEnv: Object.freeze({ PATH: env.PATH }),
  });
}

/** Parses "batch=4,default=1": queue names with positive weights. */
export function parseQueueWeights(found: { value: string; from: string } | undefined): Readonly<Record<string, number>> {
  const weights: Record<string, number> = {};
  for (const part of found?.value.split(",") ?? []) {
    if (part.trim() === "") continue;
    const [name = "", weight = "", ...rest] = part.split("=").map((item) => item.trim());
    const value = Number(weight);
    if (rest.length > 0 || !QueueName.safeParse(name).success || weight === "" || !Number.isFinite(value) || value <= 0 || value > 1_000_000) {
      throw new ValidationError(`${found?.from ?? "--queue-weights"}: "${part.trim()}" is not queue=weight with a positive weight (e.g. batch=4,default=1)`, { field: "queueWeights" });
    }
    weights[name] = value;
  }
  return Object.freeze(weights);
}

function syncInterval(source: ConfigSource): number | undefined {
  const found = source.raw("syncInterval", "AIRLOCK_SYNC_INTERVAL");
  if (found === undefined || found.value === "off") return undefined;
  const ms = source.durationMs("syncInterval", "AIRLOCK_SYNC_INTERVAL", "0s");
  if (ms < 1000) throw new ValidationError(`${found.from}: "${found.value}" is shorter than 1s (e.g. 5m, or off)`, { field: "syncInterval" });
  return ms;
}

/**
 * `--api-token a,b` (or AIRLOCK_API_TOKEN) and `--api-token-file f,g` (or AIRLOCK_API_TOKEN_FILE):
 * every token named is accepted. The files are read here too, so a bad one fails the start.
 */
function tokenSources(source: ConfigSource, flag: "executorToken" | "apiToken", envName: string): TokenSources {
  const sources: TokenSources = Object.freeze({
    given: Object.freeze(source.list(flag, envName, [])),
    files: Object.freeze(source.list(`${flag}File`, `${envName}_FILE`, []).map((file) => resolve(file))),
    fileFlag: flag === "executorToken" ? "--executor-token-file" : "--api-token-file",
  });
  if (sources.files.length > 0) resolveTokens("", flag === "executorToken" ? "executor" : "api", sources);
  return sources;
}

function optionalPath(path: string | undefined): string | undefined {
  return path === undefined ? undefined : resolve(path);
}
