/**
 * Ships a job's log entries to the coordinator as they are written.
 *
 * Per entry: bytes -> Redactor -> EntryCap -> pending -> appends at the entry's byte offset. A
 * short linger batches trickling output, and `batchBytes` pending sends at once. Appends are handed
 * to the job client without waiting for the previous one's answer: the client applies a job's
 * calls in order and batches what is pushed while a request is in flight (event-queue.ts), and
 * retries network and 5xx failures itself, re-sending the same bytes at the same offset (which the
 * coordinator stores once).
 *
 * Errors: LeaseLostError stops the shipper and tells the job runner; any other failure the client
 * gave up on leaves a gap, logged; the cancel flag in an append reply is passed on at once.
 */
import type { Logger } from "../common/logger.ts";
import { LeaseLostError } from "../protocol/index.ts";
import type { JobClient } from "./client.ts";
import { EntryCap, LogBudget } from "./log-cap.ts";
import { Redactor } from "./redactor.ts";

export interface ShipperOptions {
  secrets: string[];
  capBytes: number;
  /** How long trickling output may wait to be batched. */
  lingerMs: number;
  /** Send at once when this much is pending. */
  batchBytes: number;
  maxRequestBytes: number;
  logger: Logger;
  onCancel: () => void;
  onLeaseLost: () => void;
}

export interface ShipperStats {
  producedBytes: number;
  sentBytes: number;
  requests: number;
}

export class LogShipper {
  readonly stats: ShipperStats = { producedBytes: 0, sentBytes: 0, requests: 0 };
  private readonly entries = new Map<string, EntryStream>();
  private readonly budget: LogBudget;
  private readonly client: JobClient;
  readonly options: ShipperOptions;
  private stopped = false;

  constructor(client: JobClient, options: ShipperOptions) {
    this.client = client;
    this.options = options;
    this.budget = new LogBudget(options.capBytes);
  }

  entry(key: string): EntryStream {
    let stream = this.entries.get(key);
    if (!stream) {
      stream = new EntryStream(key, this, this.client, new Redactor(this.options.secrets), new EntryCap(this.budget));
      this.entries.set(key, stream);
    }
    return stream;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Stops all shipping (the attempt is gone). */
  stop(): void {
    this.stopped = true;
  }

  /** Ends every entry and waits until all of it is stored. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.entries.values()].map((entry) => entry.end()));
  }
}

export class EntryStream {
  private readonly key: string;
  private readonly shipper: LogShipper;
  private readonly client: JobClient;
  private readonly redactor: Redactor;
  private readonly cap: EntryCap;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private offset = 0;
  /** Appends handed to the client and not yet answered. */
  private readonly sending = new Set<Promise<void>>();
  private lingerTimer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(key: string, shipper: LogShipper, client: JobClient, redactor: Redactor, cap: EntryCap) {
    this.key = key;
    this.shipper = shipper;
    this.client = client;
    this.redactor = redactor;
    this.cap = cap;
  }

  write(chunk: Uint8Array | string): void {
    if (this.ended || this.shipper.isStopped) return;
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    this.shipper.stats.producedBytes += bytes.byteLength;
    this.enqueue(this.cap.push(this.redactor.push(bytes)));
  }

  /**
   * Flushes held bytes and the cap's tail and resolves once everything is stored. Every append is
   * handed to the client before `end` returns its promise, so a report made after it (the entry's
   * finish) is applied after the log (the client keeps a job's calls in order).
   */
  end(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      this.enqueue(this.cap.push(this.redactor.end()));
      this.enqueue(this.cap.end());
    }
    this.kick(true);
    return Promise.all(this.sending).then(() => undefined);
  }

  private enqueue(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.kick(this.pendingBytes >= this.shipper.options.batchBytes);
  }

  private kick(now: boolean): void {
    if (this.pendingBytes === 0) return;
    if (now || this.shipper.options.lingerMs <= 0) {
      if (this.lingerTimer) clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      while (this.pendingBytes > 0 && !this.shipper.isStopped) this.send(this.takeBatch());
      return;
    }
    this.lingerTimer ??= setTimeout(() => {
      this.lingerTimer = undefined;
      this.kick(true);
    }, this.shipper.options.lingerMs);
  }

  private takeBatch(): Buffer {
    const max = this.shipper.options.maxRequestBytes;
    const joined = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    const batch = joined.subarray(0, max);
    const rest = joined.subarray(batch.length);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return batch;
  }

  /** Hands one append to the client at once; the client retries what can be retried. */
  private send(batch: Buffer): void {
    const offset = this.offset;
    this.offset += batch.length;
    this.shipper.stats.requests += 1;
    this.shipper.stats.sentBytes += batch.length;
    const sent: Promise<void> = this.client.appendLog(this.key, offset, batch).then(
      (reply) => {
        if (reply.cancel) this.shipper.options.onCancel();
      },
      (error: unknown) => {
        if (error instanceof LeaseLostError) {
          this.shipper.stop();
          this.shipper.options.onLeaseLost();
          return;
        }
        this.shipper.options.logger.error("log append failed; this entry's log has a gap", { key: this.key, offset, bytes: batch.length, error: String(error) });
      },
    );
    this.sending.add(sent);
    void sent.finally(() => this.sending.delete(sent));
  }
}
