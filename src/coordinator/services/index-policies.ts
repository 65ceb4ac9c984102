/**
 * Indexing policies (docs/indexing.md): per repository, whether the default branch is indexed on
 * each new HEAD, and the index config that overrides the tree's airlock-index.yaml and inference.
 *
 * A HEAD is "new" when it differs from the policy's seenHead; `markHeadSeen` changes seenHead in
 * one store statement and is true for one caller only, so a HEAD is acted on once however many
 * paths (a sync, a fetch for a submit, the periodic sync, another coordinator) notice it at once.
 * The index request itself is deduplicated again by IndexService (an index of the same key that
 * is pending or completed is not redone).
 *
 * The periodic sync is one loop on the injected clock: sleep the interval, then fetch every
 * auto-indexed repository in turn; `stop` aborts the sleep and waits for a sweep in progress.
 * While `sync` runs for a repository, the fetch listener leaves that repository to it, so the
 * caller gets the outcome in its response.
 */
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { parseIndexOverride } from "../../indexing/index.ts";
import { AirlockError, IndexPolicyRequest, RepositorySyncRequest, validationErrorFrom, NotFoundError, type AutoIndexOutcome, type IndexPolicyResponse, type IndexPolicyView, type RepositorySyncResponse } from "../../protocol/index.ts";
import type { IndexPolicyRecord, Store } from "../../store/index.ts";
import type { IndexService } from "./indexes.ts";
import type { Repositories } from "./repositories.ts";

export function policyView(record: IndexPolicyRecord): IndexPolicyView {
  return { repository: record.repository, autoIndex: record.autoIndex, indexConfig: record.config, seenHead: record.seenHead, updatedAt: new Date(record.updatedAt).toISOString() };
}

export interface IndexPolicyOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  repositories: Repositories;
  indexes: IndexService;
  /** Fetch every auto-indexed repository this often; undefined: only on `repo sync` and submits. */
  syncIntervalMs?: number | undefined;
}

export class IndexPolicies {
  private readonly options: IndexPolicyOptions;
  private readonly syncing = new Set<string>();
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(options: IndexPolicyOptions) {
    this.options = options;
    options.repositories.onFetched((name) => {
      if (this.syncing.has(name)) return;
      this.autoIndex(name).catch((error: unknown) => options.logger.error("auto-index failed", { repository: name, error: String(error) }));
    });
  }

  async list(repository?: string): Promise<IndexPolicyView[]> {
    const policies = await this.options.store.indexes.listPolicies();
    return policies.filter((policy) => repository === undefined || policy.repository === repository).map(policyView);
  }

  /** Changes a policy; turning auto-indexing on indexes the current HEAD unless it was seen. */
  async set(input: unknown): Promise<IndexPolicyResponse> {
    const parsed = IndexPolicyRequest.safeParse(input);
    if (!parsed.success) throw validationErrorFrom(parsed.error, "invalid index policy");
    const { repository, autoIndex, indexConfig } = parsed.data;
    if (!(await this.options.store.repositories.get(repository))) throw new NotFoundError(`repository "${repository}" is not registered (see \`airlock repo add\`)`);
    // A config that would not plan is refused now, not at the next HEAD.
    if (indexConfig) parseIndexOverride(indexConfig, "index config");
    const policy = await this.options.store.indexes.putPolicy(repository, { autoIndex, config: indexConfig }, this.options.clock.now());
    this.options.logger.info("index policy set", { repository, autoIndex: policy.autoIndex, config: policy.config !== null });
    const outcome = autoIndex ? await this.autoIndex(repository) : null;
    return { policy: policyView((await this.options.store.indexes.getPolicy(repository)) ?? policy), autoIndex: outcome };
  }

  /** `repo sync`: fetches the origin, then auto-indexes a new HEAD. */
  async sync(input: unknown): Promise<RepositorySyncResponse> {
    const parsed = RepositorySyncRequest.safeParse(input);
    if (!parsed.success) throw validationErrorFrom(parsed.error, "invalid sync request");
    const { repository } = parsed.data;
    this.syncing.add(repository);
    try {
      const previousHead = await this.options.repositories.head(repository);
      const head = await this.options.repositories.sync(repository);
      return { repository, head, previousHead, autoIndex: await this.autoIndex(repository) };
    } finally {
      this.syncing.delete(repository);
    }
  }

  /** Indexes HEAD when the repository is auto-indexed and HEAD is new; null when nothing was done. */
  private async autoIndex(repository: string): Promise<AutoIndexOutcome | null> {
    const policy = await this.options.store.indexes.getPolicy(repository);
    if (!policy?.autoIndex) return null;
    const head = await this.options.repositories.head(repository);
    if (!head || !(await this.options.store.indexes.markHeadSeen(repository, head, this.options.clock.now()))) return null;
    try {
      const plan = await this.options.indexes.plan({ repository, commit: head });
      this.options.logger.info("auto-index", { repository, head, queued: plan.entries.filter((entry) => entry.action === "queued").length });
      return { head, plan, error: null };
    } catch (error) {
      // A HEAD that cannot be indexed (nothing to index, a bad config) is not tried again until it moves.
      if (!(error instanceof AirlockError)) throw error;
      this.options.logger.warn("auto-index: nothing queued", { repository, head, error: error.message });
      return { head, plan: null, error: error.message };
    }
  }

  /** One periodic sweep: every auto-indexed repository fetched (and a new HEAD indexed). */
  async sweep(): Promise<void> {
    for (const policy of await this.options.store.indexes.listPolicies()) {
      if (!policy.autoIndex || this.stopping.signal.aborted) continue;
      try {
        await this.sync({ repository: policy.repository });
      } catch (error) {
        this.options.logger.warn("periodic sync failed", { repository: policy.repository, error: String(error) });
      }
    }
  }

  start(): void {
    const interval = this.options.syncIntervalMs;
    if (interval === undefined || this.loop) return;
    this.loop = (async () => {
      for (;;) {
        try {
          await this.options.clock.sleep(interval, this.stopping.signal);
        } catch {
          return;
        }
        await this.sweep().catch((error: unknown) => this.options.logger.error("periodic sync failed", { error: String(error) }));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }
}
