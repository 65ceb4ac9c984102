/** What every route module gets: the coordinator's services, built once in server.ts. */
import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import type { Store } from "../store/index.ts";
import type { CoordinatorConfig } from "./config.ts";
import type { Auth } from "./http/auth.ts";
import type { BatchApplier } from "./services/batch-apply.ts";
import type { BatchService } from "./services/batches.ts";
import type { Dispatcher } from "./services/dispatcher.ts";
import type { IndexPolicies } from "./services/index-policies.ts";
import type { PackCache } from "./services/pack-cache.ts";
import type { IndexService } from "./services/indexes.ts";
import type { JobService } from "./services/jobs.ts";
import type { CoordinatorMetrics } from "./services/metrics.ts";
import type { Repositories } from "./services/repositories.ts";
import type { JobSecrets } from "./secrets/job-secrets.ts";

export interface CoordinatorContext {
  config: Readonly<CoordinatorConfig>;
  store: Store;
  clock: Clock;
  logger: Logger;
  auth: Auth;
  dispatcher: Dispatcher;
  repositories: Repositories;
  /** Packs served over git, kept by request; undefined when turned off. */
  packCache?: PackCache | undefined;
  jobs: JobService;
  secrets: JobSecrets;
  batches: BatchService;
  batchApply: BatchApplier;
  indexes: IndexService;
  indexPolicies: IndexPolicies;
  metrics: CoordinatorMetrics;
  /** Aborted when the coordinator shuts down (ends long polls and SSE streams). */
  shutdown: AbortSignal;
}
