/**
 * Store changes across processes: one dedicated connection LISTENs on the change channel and turns
 * other processes' notifications into StoreChanges. Changes made by this process are announced
 * locally right after they commit (no round trip through Postgres) and skipped when their own
 * notification comes back, so each is seen once.
 *
 * States: CONNECTING -> LISTENING -(error, end, failed ping)-> BROKEN -(backoff)-> CONNECTING ...
 * -> CLOSED. Notifications sent while no connection listened are lost, so after every reconnect
 * `onResync(since)` is called to announce, from the tables, whatever may have changed meanwhile.
 * A ping every PING_MS finds a connection that died without an error (a silent network drop).
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Logger } from "../../common/logger.ts";
import { Isolation, NETWORK_MODES, networkRank, type NetworkMode } from "../../protocol/index.ts";
import type { StoreChange } from "../store.ts";
import { NOTIFY_CHANNEL } from "./migrations.ts";

const PING_MS = 10_000;
const PING_TIMEOUT_MS = 5_000;
const MAX_BACKOFF_MS = 5_000;
/** How long job changes gather before they are announced to other processes. */
const BATCH_MS = 25;

export class ChangeListener {
  /** Tags this process's notifications so it can skip them. */
  readonly origin = randomBytes(8).toString("hex");
  private client: pg.Client | undefined;
  private closed = false;
  private backoffMs = 100;
  private brokenSince: number | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly options: {
    config: pg.ClientConfig;
    emit: (change: StoreChange) => void;
    onResync: (since: number) => Promise<void>;
    logger: Logger | undefined;
  };

  constructor(options: { config: pg.ClientConfig; emit: (change: StoreChange) => void; onResync: (since: number) => Promise<void>; logger: Logger | undefined }) {
    this.options = options;
  }

  /** Connects and listens; rejects if the first connection fails (later ones are retried). */
  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ ...this.options.config, application_name: "airlock-listen", keepAlive: true });
    client.on("notification", (message) => this.receive(message.payload));
    client.on("error", (error) => this.broken(client, error));
    client.on("end", () => this.broken(client, new Error("connection ended")));
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch (error) {
      this.broken(client, error);
      throw error;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.backoffMs = 100;
    this.pingTimer = setInterval(() => this.ping(client), PING_MS);
    this.pingTimer.unref();
    const since = this.brokenSince;
    this.brokenSince = undefined;
    if (since !== undefined) {
      this.options.logger?.info("listening for store changes again", { downMs: Date.now() - since });
      await this.options.onResync(since).catch((error: unknown) => this.options.logger?.warn("resync after reconnect failed", { error: String(error) }));
    }
  }

  private ping(client: pg.Client): void {
    const timeout = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error("ping timed out")), PING_TIMEOUT_MS).unref());
    Promise.race([client.query("SELECT 1"), timeout]).catch((error: unknown) => this.broken(client, error));
  }

  private broken(client: pg.Client, error: unknown): void {
    if (client !== this.client || this.closed) return;
    this.client = undefined;
    clearInterval(this.pingTimer);
    this.brokenSince ??= Date.now();
    this.options.logger?.warn("store change listener lost its connection; reconnecting", { error: String(error), retryMs: this.backoffMs });
    client.removeAllListeners("notification");
    client.on("error", () => undefined);
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
    this.retryTimer = setTimeout(() => {
      if (this.closed) return;
      // A failed attempt has already scheduled the next one (through broken()).
      this.connect().catch(() => undefined);
    }, delay);
    this.retryTimer.unref();
  }

  private receive(payload: string | undefined): void {
    if (!payload) return;
    let message: { o?: unknown; q?: unknown; i?: unknown; n?: unknown; j?: unknown };
    try {
      message = JSON.parse(payload) as typeof message;
    } catch {
      return;
    }
    if (message.o === this.origin) return;
    if (Array.isArray(message.j)) {
      for (const id of message.j) if (typeof id === "number") this.options.emit({ kind: "job", jobId: id });
    } else if (typeof message.j === "number") this.options.emit({ kind: "job", jobId: message.j });
    else if (typeof message.q === "string") {
      const isolation = Isolation.safeParse(message.i);
      const network = typeof message.n === "number" ? NETWORK_MODES[message.n] : undefined;
      if (isolation.success) this.options.emit({ kind: "queued", queue: message.q, isolation: isolation.data, network });
    }
  }

  /** Whether a connection is listening now (for tests and health). */
  get listening(): boolean {
    return this.client !== undefined && this.brokenSince === undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners("notification");
      client.on("error", () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}

/** A notification payload announcing that `queue` has a claimable job (see migrations.ts). */
export function queuedPayload(origin: string, queue: string, isolation: Isolation, network?: NetworkMode): string {
  return JSON.stringify({ o: origin, q: queue, i: isolation, ...(network ? { n: networkRank(network) } : {}) });
}

/**
 * Sends "these jobs changed" to other processes in batches: every notifying commit takes a
 * database-wide lock (and wakes every listener), so one statement per batch window, not one per
 * change. A change waits at most BATCH_MS (plus one batch in flight) before it is sent; only log
 * streams on other coordinators wait for these (claims are woken by the unbatched "queued"
 * announcements). Sent after the changes committed: if this process dies first, others miss that
 * wake-up (their streams re-read periodically).
 */
export class JobChangePublisher {
  private pending = new Set<number>();
  private flushing: Promise<void> | undefined;
  private readonly options: { send: (payloads: string[]) => Promise<unknown>; origin: string; logger: Logger | undefined };

  constructor(options: { send: (payloads: string[]) => Promise<unknown>; origin: string; logger: Logger | undefined }) {
    this.options = options;
  }

  publish(jobIds: Iterable<number>): void {
    for (const id of jobIds) this.pending.add(id);
    if (!this.flushing && this.pending.size > 0) this.flushing = this.flush();
  }

  private async flush(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, BATCH_MS));
    const ids = [...this.pending];
    this.pending = new Set();
    const payloads: string[] = [];
    for (let start = 0; start < ids.length; start += 500) payloads.push(JSON.stringify({ o: this.options.origin, j: ids.slice(start, start + 500) }));
    try {
      await this.options.send(payloads);
    } catch (error) {
      this.options.logger?.warn("could not announce job changes to other coordinators", { error: String(error), jobs: ids.length });
    } finally {
      this.flushing = undefined;
      if (this.pending.size > 0) this.flushing = this.flush();
    }
  }

  /** Waits for what was published to be sent. */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}
