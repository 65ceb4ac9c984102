/** Starts a coordinator: store, services, HTTP app, lease reaper. Used by `airlock server` and the demo. */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { systemClock, type Clock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import { resolveTokens } from "./token-store.ts";
import { openStore, type Store } from "../store/index.ts";
import { buildApp } from "./app.ts";
import type { CoordinatorConfig } from "./config.ts";
import type { CoordinatorContext } from "./context.ts";
import { Auth } from "./http/auth.ts";
import { BatchApplier } from "./services/batch-apply.ts";
import { BatchService } from "./services/batches.ts";
import { IndexPolicies } from "./services/index-policies.ts";
import { IndexService } from "./services/indexes.ts";
import { Dispatcher } from "./services/dispatcher.ts";
import { JobService } from "./services/jobs.ts";
import { LeaseReaper } from "./services/lease-reaper.ts";
import { CoordinatorMetrics } from "./services/metrics.ts";
import { PackCache } from "./services/pack-cache.ts";
import { Repositories } from "./services/repositories.ts";
import { JobSecrets } from "./secrets/job-secrets.ts";
import { readSecretKeyFile } from "./secrets/keyring.ts";

export interface RunningCoordinator {
  /** Base URL executors and the CLI use, e.g. "http://127.0.0.1:7780". */
  url: string;
  executorToken: string;
  apiToken: string;
  /** Where generated tokens were written (undefined for tokens that were given). */
  tokenFiles: { executor: string | undefined; api: string | undefined };
  /** Reads the token files again (SIGHUP); throws, changing nothing, when one is bad. */
  reloadTokens(): { executor: number; api: number };
  store: Store;
  close(): Promise<void>;
}

export async function startCoordinator(config: Readonly<CoordinatorConfig>, logger: Logger, clock: Clock = systemClock): Promise<RunningCoordinator> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const executorToken = resolveTokens(config.dataDir, "executor", config.executorTokens);
  const apiToken = resolveTokens(config.dataDir, "api", config.apiTokens);
  for (const stored of [executorToken, apiToken]) {
    if (stored.tightened) logger.warn("a token file was readable by others: made private again (mode 0600); rotate the token if others may have read it", { path: stored.path });
  }
  const secretKeys = {
    key: config.secretsKeyFile ? readSecretKeyFile(config.secretsKeyFile) : undefined,
    previousKeys: config.previousSecretsKeyFiles.map((path) => readSecretKeyFile(path, "--previous-secrets-key-file")),
  };
  const store = await openStore({ databaseUrl: config.databaseUrl, sqlitePath: join(config.dataDir, "airlock.db"), logger: logger.child({ scope: "store" }) });
  const shutdown = new AbortController();
  const secrets = new JobSecrets({ store, ...secretKeys, allowPlaintext: config.allowPlaintextSecrets });
  const metrics = new CoordinatorMetrics(store, clock, config.leaseMs);
  const repositories = new Repositories({ store, dataDir: config.dataDir, hostEnv: config.hostEnv, clock, logger: logger.child({ scope: "repositories" }) });
  const batches = new BatchService({ store, secrets, clock, logger: logger.child({ scope: "batches" }), repositories, hostEnv: config.hostEnv });
  const indexes = new IndexService({ store, clock, logger: logger.child({ scope: "indexes" }), repositories, hostEnv: config.hostEnv });
  const indexPolicies = new IndexPolicies({ store, clock, logger: logger.child({ scope: "indexes" }), repositories, indexes, syncIntervalMs: config.syncIntervalMs });
  const batchApply = new BatchApplier({ store, clock, logger: logger.child({ scope: "batches" }), repositories, batches, hostEnv: config.hostEnv, credentialHelper: config.gitCredentialHelper });
  const ctx: CoordinatorContext = {
    config,
    store,
    clock,
    logger,
    auth: new Auth({ executorTokens: executorToken.tokens, apiTokens: apiToken.tokens, store }),
    dispatcher: new Dispatcher({ store, clock, leaseMs: config.leaseMs, logger, queueWeights: config.queueWeights }),
    repositories,
    packCache: await PackCache.open(join(config.dataDir, "pack-cache"), config.gitPackCacheMaxBytes, logger.child({ scope: "pack-cache" })),
    jobs: new JobService({ store, clock, logger, repositories, metrics, secrets }),
    secrets,
    batches,
    batchApply,
    indexes,
    indexPolicies,
    metrics,
    shutdown: shutdown.signal,
  };
  const reaper = new LeaseReaper({
    store,
    clock,
    logger: logger.child({ scope: "reaper" }),
    intervalMs: config.reapIntervalMs,
    leaseMs: config.leaseMs,
    onReaped: () => metrics.leasesExpired.inc(),
  });
  const app = buildApp(ctx);
  await app.listen({ host: config.host, port: config.port });
  reaper.start();
  indexPolicies.start();
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host === "0.0.0.0" ? "127.0.0.1" : config.host;
  const url = `${config.tls ? "https" : "http"}://${host}:${port}`;
  logger.info("coordinator listening", { url, dataDir: config.dataDir, secrets: secrets.mode });
  let closed = false;
  return {
    url,
    executorToken: executorToken.tokens[0] ?? "",
    apiToken: apiToken.tokens[0] ?? "",
    tokenFiles: { executor: executorToken.path, api: apiToken.path },
    reloadTokens() {
      // Both are read before either is replaced: a bad file changes nothing.
      const executor = resolveTokens(config.dataDir, "executor", config.executorTokens).tokens;
      const api = resolveTokens(config.dataDir, "api", config.apiTokens).tokens;
      ctx.auth.setTokens({ executor, api });
      return { executor: executor.length, api: api.length };
    },
    store,
    async close() {
      if (closed) return;
      closed = true;
      shutdown.abort();
      ctx.dispatcher.close();
      await reaper.stop();
      await indexPolicies.stop();
      await app.close();
      await store.close();
    },
  };
}
