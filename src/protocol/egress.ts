/**
 * The egress record of a job with `network: internet`: every destination its steps asked the
 * executor's gateway for, the verdict, and the bytes each way. The executor uploads it as the
 * artifact `egress.json`; the job log gets `summarizeEgress`, which the web UI can use too.
 */
import { z } from "zod";
import { formatSize } from "./format-size.ts";

export const EGRESS_PROTOCOLS = ["http", "connect", "socks", "dns"] as const;

export const EgressConnection = z.object({
  /** When the client asked (ISO 8601). */
  at: z.string(),
  /** How it asked: a plain-HTTP proxy request, an HTTP CONNECT tunnel, SOCKS5, or a DNS question. */
  protocol: z.enum(EGRESS_PROTOCOLS),
  /** The name or literal address asked for, as asked. */
  host: z.string(),
  /** 53 for DNS questions. */
  port: z.number().int().min(0).max(65535),
  /** The address connected to (DNS: the addresses answered, comma-separated). */
  address: z.string().optional(),
  verdict: z.enum(["allowed", "refused"]),
  /** The rule that decided: "deny 10.0.0.0/8 (private-use, RFC 1918)", "allow 192.0.2.0/24", "public". */
  rule: z.string().optional(),
  /** For refusals: why, in a sentence. */
  reason: z.string().optional(),
  /** For allowed destinations that could not be reached: the error (name not found, connection refused). */
  error: z.string().optional(),
  bytesOut: z.number().int().nonnegative(),
  bytesIn: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
});
export type EgressConnection = z.infer<typeof EgressConnection>;

export const EgressRecord = z.object({
  version: z.literal(1),
  policy: z.object({
    allow: z.array(z.string()),
    deny: z.array(z.string()),
    jobAllow: z.array(z.string()).optional(),
    maxBytes: z.number().int().positive().optional(),
    maxConnections: z.number().int().positive(),
  }),
  totals: z.object({
    connections: z.number().int().nonnegative(),
    allowed: z.number().int().nonnegative(),
    refused: z.number().int().nonnegative(),
    bytesOut: z.number().int().nonnegative(),
    bytesIn: z.number().int().nonnegative(),
  }),
  /** Set when a limit ended the job's egress: "the job's egress limit (resources.egress) of 10.0 MiB was reached". */
  limitHit: z.string().optional(),
  /** Connections counted in the totals but not listed (beyond the cap on stored entries). */
  dropped: z.number().int().nonnegative(),
  connections: z.array(EgressConnection),
});
export type EgressRecord = z.infer<typeof EgressRecord>;

const SHOWN = 5;

/** A few lines for the job log (and the web UI): totals, each refused destination and why, the top destinations by bytes, a limit hit. */
export function summarizeEgress(record: EgressRecord): string {
  const { totals } = record;
  const lines = [
    `egress: ${totals.connections} connection(s), ${totals.allowed} allowed, ${totals.refused} refused; ` +
      `${formatSize(totals.bytesOut, " ")} out, ${formatSize(totals.bytesIn, " ")} in` +
      (record.dropped > 0 ? ` (${record.dropped} not listed in the record)` : ""),
  ];
  const target = (item: EgressConnection): string => {
    const where = item.protocol === "dns" ? item.host : `${item.host}:${item.port}`;
    const shown = item.address && item.address !== item.host && item.protocol !== "dns" ? `${where} (${item.address})` : where;
    return item.protocol === "dns" ? `${shown} (DNS)` : shown;
  };
  const refused = new Map<string, { reason: string; count: number }>();
  for (const item of record.connections) {
    if (item.verdict !== "refused") continue;
    const key = target(item);
    const seen = refused.get(key);
    if (seen) seen.count += 1;
    else refused.set(key, { reason: item.reason ?? item.rule ?? "refused", count: 1 });
  }
  for (const [key, { reason, count }] of [...refused].slice(0, SHOWN * 2)) lines.push(`  refused ${key}${count > 1 ? ` x${count}` : ""}: ${reason}`);
  if (refused.size > SHOWN * 2) lines.push(`  ... and ${refused.size - SHOWN * 2} more refused destination(s)`);
  const failed = new Map<string, string>();
  for (const item of record.connections) if (item.verdict === "allowed" && item.error) failed.set(target(item), item.error);
  for (const [key, error] of [...failed].slice(0, SHOWN)) lines.push(`  failed ${key}: ${error}`);
  const bytes = new Map<string, number>();
  for (const item of record.connections) {
    if (item.verdict !== "allowed" || item.protocol === "dns") continue;
    const key = `${item.host}:${item.port}`;
    bytes.set(key, (bytes.get(key) ?? 0) + item.bytesIn + item.bytesOut);
  }
  const top = [...bytes].filter(([, count]) => count > 0).sort((a, b) => b[1] - a[1]).slice(0, SHOWN);
  if (top.length > 0) lines.push(`  top destinations: ${top.map(([key, count]) => `${key} ${formatSize(count, " ")}`).join(", ")}`);
  if (record.limitHit) lines.push(`  limit: ${record.limitHit}`);
  return lines.join("\n");
}

/** The artifact holding a job's egress record. */
export const EGRESS_ARTIFACT = "egress.json";
