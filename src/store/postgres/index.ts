/**
 * The shared backend: one Postgres database under any number of coordinators. Jobs, logs,
 * artifacts and repositories all live in it; changes reach every coordinator through
 * LISTEN/NOTIFY (see notifier.ts), so `crossProcessNotifications` is true.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../../common/logger.ts";
import { NETWORK_MODES, UnavailableError, type Isolation } from "../../protocol/index.ts";
import type { Store, StoreChange } from "../store.ts";
import { PostgresBatchStore } from "./batch-store.ts";
import { PostgresIndexStore } from "./index-store.ts";
import { PostgresDatabase, type Queryable } from "./database.ts";
import { PostgresJobStore } from "./job-store.ts";
import { NOTIFY_CHANNEL } from "./migrations.ts";
import { ChangeListener, JobChangePublisher, queuedPayload } from "./notifier.ts";
import { PostgresOutputStore } from "./output-store.ts";
import { PostgresRepositoryStore } from "./repository-store.ts";
import { PostgresSecretStore } from "./secret-store.ts";

/**
 * How the stores announce changes. A job made claimable is announced inside the transaction that
 * did it (delivered at commit, so never lost to a crash); every change is also told to this
 * process right after commit, and other job changes go to other processes in batches.
 */
export interface Announcer {
  readonly channel: string;
  readonly origin: string;
  /** In the caller's transaction: announces jobs made claimable to other processes. */
  queuedInTx(client: Queryable, changes: StoreChange[]): Promise<void>;
  /** After commit: tells this process at once, and other processes of job changes in the next batch. */
  committed(changes: StoreChange[]): void;
}

export interface PostgresStoreOptions {
  /** Connections in the pool (default 10), besides the one that listens. */
  poolSize?: number;
  logger?: Logger;
}

export interface PostgresStore extends Store {
  /** Whether the change listener is connected now. */
  readonly listening: boolean;
}

/** Connects (pool and listener) and returns the store; call `migrate()` before use. */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const db = new PostgresDatabase(url, options.poolSize === undefined ? {} : { poolSize: options.poolSize });
  const changes = new EventEmitter();
  changes.setMaxListeners(0);
  const emit = (change: StoreChange): void => {
    changes.emit("change", change);
  };
  const listener = new ChangeListener({
    config: db.config,
    emit,
    logger: options.logger,
    // Notifications sent while nobody listened are lost: announce everything that may have moved.
    onResync: async (since) => {
      const queued = await db.query<{ queue: string; isolation: Isolation; network_rank: number }>(
        "SELECT DISTINCT queue, isolation, network_rank FROM jobs WHERE state = 'queued'",
      );
      for (const row of queued) emit({ kind: "queued", queue: row.queue, isolation: row.isolation, network: NETWORK_MODES[Number(row.network_rank)] });
      const touched = await db.query<{ id: number }>("SELECT id FROM jobs WHERE state = 'processing' OR finished_at >= $1", [since - 1000]);
      for (const row of touched) emit({ kind: "job", jobId: row.id });
    },
  });
  const notify = (client: Queryable, payloads: string[]) => client.query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload", [NOTIFY_CHANNEL, payloads]);
  const publisher = new JobChangePublisher({ origin: listener.origin, logger: options.logger, send: (payloads) => notify(db.pool, payloads) });
  const announcer: Announcer = {
    channel: NOTIFY_CHANNEL,
    origin: listener.origin,
    async queuedInTx(client, list) {
      const payloads = list.flatMap((change) => (change.kind === "queued" ? [queuedPayload(listener.origin, change.queue, change.isolation, change.network)] : []));
      if (payloads.length > 0) await notify(client, payloads);
    },
    committed(list) {
      for (const change of list) emit(change);
      publisher.publish(list.flatMap((change) => (change.kind === "job" ? [change.jobId] : [])));
    },
  };
  try {
    await listener.start();
  } catch (error) {
    await db.close();
    const parsed = new URL(url);
    const where = `${parsed.hostname || "localhost"}:${parsed.port || "5432"}`;
    throw new UnavailableError(`cannot connect to the database at ${where}: ${(error as Error).message}`, { cause: error });
  }
  let closed = false;
  return {
    jobs: new PostgresJobStore(db, announcer),
    outputs: new PostgresOutputStore(db, announcer),
    secrets: new PostgresSecretStore(db),
    repositories: new PostgresRepositoryStore(db),
    batches: new PostgresBatchStore(db),
    indexes: new PostgresIndexStore(db),
    capabilities: { crossProcessNotifications: true },
    get listening() {
      return listener.listening;
    },
    onChange(listener) {
      changes.on("change", listener);
      return () => changes.off("change", listener);
    },
    async migrate() {
      await db.migrate();
    },
    async close() {
      if (closed) return;
      closed = true;
      changes.removeAllListeners();
      await publisher.drain();
      await listener.close();
      await db.close();
    },
  };
}
