/**
 * The gateway's ledger: one entry per destination asked for, totals, the byte limit.
 *
 * An entry is made when a client names a destination (PENDING: not in the record yet), gets
 * its verdict once (ALLOWED or REFUSED: counted, and listed unless `maxEntries` are listed
 * already, when `dropped` counts it), counts bytes while its connection is open, and is FINISHED
 * once (its duration fixed). Bytes are added as they pass; the first add that takes the total
 * past `maxBytes` sets `limitHit` and calls `onLimit` once (the gateway then ends every
 * connection). Everything runs on the event loop: no locks.
 */
import type { Clock } from "../common/clock.ts";
import { formatSize } from "../protocol/format-size.ts";
import type { EgressConnection, EgressRecord } from "../protocol/egress.ts";
import type { EgressVerdict } from "./policy.ts";

export const DEFAULT_MAX_ENTRIES = 5000;

export class LedgerEntry {
  readonly protocol: EgressConnection["protocol"];
  readonly host: string;
  readonly port: number;
  readonly startedAt: number;
  address: string | undefined;
  verdict: "allowed" | "refused" | undefined;
  rule: string | undefined;
  reason: string | undefined;
  error: string | undefined;
  bytesOut = 0;
  bytesIn = 0;
  endedAt: number | undefined;
  private readonly ledger: EgressLedger;

  constructor(ledger: EgressLedger, protocol: EgressConnection["protocol"], host: string, port: number, now: number) {
    this.ledger = ledger;
    this.protocol = protocol;
    this.host = host;
    this.port = port;
    this.startedAt = now;
  }

  allow(address: string | undefined, verdict: EgressVerdict): void {
    this.address = address;
    this.decide("allowed", verdict.rule, undefined);
  }

  refuse(address: string | undefined, rule: string, reason: string): void {
    this.address = address;
    this.decide("refused", rule, reason);
    this.finish();
  }

  fail(error: string): void {
    this.error = error;
    if (this.verdict === undefined) this.decide("allowed", undefined, undefined);
    this.finish();
  }

  addOut(bytes: number): void {
    this.bytesOut += bytes;
    this.ledger.addBytes(bytes, 0);
  }

  addIn(bytes: number): void {
    this.bytesIn += bytes;
    this.ledger.addBytes(0, bytes);
  }

  finish(): void {
    if (this.endedAt === undefined) this.endedAt = this.ledger.now();
  }

  toJSON(now: number): EgressConnection {
    return {
      at: new Date(this.startedAt).toISOString(),
      protocol: this.protocol,
      host: this.host,
      port: this.port,
      ...(this.address !== undefined ? { address: this.address } : {}),
      verdict: this.verdict ?? "allowed",
      ...(this.rule !== undefined ? { rule: this.rule } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      ...(this.error !== undefined ? { error: this.error } : {}),
      bytesOut: this.bytesOut,
      bytesIn: this.bytesIn,
      durationMs: Math.max(0, (this.endedAt ?? now) - this.startedAt),
    };
  }

  private decide(verdict: "allowed" | "refused", rule: string | undefined, reason: string | undefined): void {
    if (this.verdict !== undefined) return;
    this.verdict = verdict;
    this.rule = rule;
    this.reason = reason;
    this.ledger.decided(this);
  }
}

export interface LedgerOptions {
  policy: EgressRecord["policy"];
  clock: Clock;
  maxBytes?: number | undefined;
  maxEntries?: number | undefined;
  onLimit: (sentence: string) => void;
}

export class EgressLedger {
  limitHit: string | undefined;
  private readonly options: LedgerOptions;
  private readonly entries: LedgerEntry[] = [];
  private readonly maxEntries: number;
  private dropped = 0;
  private connections = 0;
  private allowed = 0;
  private refused = 0;
  private bytesOut = 0;
  private bytesIn = 0;

  constructor(options: LedgerOptions) {
    this.options = options;
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  }

  now(): number {
    return this.options.clock.now();
  }

  /** A destination asked for; it enters the record once it has its verdict. */
  open(protocol: EgressConnection["protocol"], host: string, port: number): LedgerEntry {
    return new LedgerEntry(this, protocol, host, port, this.now());
  }

  decided(entry: LedgerEntry): void {
    this.connections += 1;
    if (entry.verdict === "allowed") this.allowed += 1;
    else this.refused += 1;
    if (this.entries.length < this.maxEntries) this.entries.push(entry);
    else this.dropped += 1;
  }

  addBytes(out: number, inbound: number): void {
    this.bytesOut += out;
    this.bytesIn += inbound;
    const max = this.options.maxBytes;
    if (max !== undefined && this.limitHit === undefined && this.bytesOut + this.bytesIn > max) {
      this.limitHit = `the job's egress limit (resources.egress) of ${formatSize(max, " ")} was reached`;
      this.options.onLimit(this.limitHit);
    }
  }

  /** Fixes the duration of every entry still open (the gateway closed). */
  finishAll(): void {
    for (const entry of this.entries) entry.finish();
  }

  record(): EgressRecord {
    const now = this.now();
    return {
      version: 1,
      policy: this.options.policy,
      totals: { connections: this.connections, allowed: this.allowed, refused: this.refused, bytesOut: this.bytesOut, bytesIn: this.bytesIn },
      ...(this.limitHit !== undefined ? { limitHit: this.limitHit } : {}),
      dropped: this.dropped,
      connections: this.entries.map((entry) => entry.toJSON(now)),
    };
  }
}
