/**
 * Ships a job's log entries to the coordinator as they are written.
 *
 * Per entry: bytes -> Redactor -> EntryCap -> pending -> one append request at a time, at the
 * entry's byte offset. While a request is in flight, new output accumulates and goes in the next
 * one, so a chatty step costs few requests and nothing is ever re-sent except the same bytes at
 * the same offset after a failed request (which the coordinator stores once). A short linger
 * batches trickling output without hurting tail latency.
 *
 * Errors: network and 5xx answers are retried with backoff (up to `giveUpMs`); LeaseLostError
 * stops the entry and tells the job runner; the cancel flag in an append reply is passed on at once.
 */
import type { Logger } from "../common/logger.ts";
import { AirlockError, LeaseLostError, UnavailableError } from "../protocol/index.ts";
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
  giveUpMs: number;
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
  private sending: Promise<void> | undefined;
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

  /** Flushes held bytes and the cap's tail, and resolves once everything is stored. */
  async end(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      this.enqueue(this.cap.push(this.redactor.end()));
      this.enqueue(this.cap.end());
    }
    this.kick(true);
    while (this.sending) await this.sending;
  }

  private enqueue(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.kick(this.pendingBytes >= this.shipper.options.batchBytes);
  }

  private kick(now: boolean): void {
    if (this.sending || this.pendingBytes === 0) return;
    if (now || this.shipper.options.lingerMs <= 0) {
      if (this.lingerTimer) clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      this.sending = this.drain().finally(() => {
        this.sending = undefined;
        if (this.pendingBytes > 0) this.kick(this.ended);
      });
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

  private async drain(): Promise<void> {
    const { logger, giveUpMs } = this.shipper.options;
    while (this.pendingBytes > 0 && !this.shipper.isStopped) {
      const batch = this.takeBatch();
      let delay = 100;
      const firstTry = Date.now();
      for (;;) {
        try {
          this.shipper.stats.requests += 1;
          this.shipper.stats.sentBytes += batch.length;
          const reply = await this.client.appendLog(this.key, this.offset, batch);
          this.offset = Math.max(this.offset + batch.length, reply.size);
          if (reply.cancel) this.shipper.options.onCancel();
          break;
        } catch (error) {
          if (error instanceof LeaseLostError) {
            this.shipper.stop();
            this.shipper.options.onLeaseLost();
            return;
          }
          const retryable = error instanceof UnavailableError || !(error instanceof AirlockError) || error.status >= 500;
          if (!retryable || Date.now() - firstTry > giveUpMs) {
            logger.error("log append failed; dropping this entry's remaining output", { key: this.key, error: String(error) });
            this.pending = [];
            this.pendingBytes = 0;
            return;
          }
          logger.warn("log append failed; retrying", { key: this.key, offset: this.offset, error: String(error) });
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 5000);
        }
      }
    }
  }
}
