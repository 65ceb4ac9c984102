/**
 * From a destination a client names to an open upstream socket, or a refusal. Shared by the
 * HTTP proxy, CONNECT and SOCKS5 (relay.ts then moves a tunnel's bytes).
 *
 * One dial: LIMITS (gateway stopped or byte limit hit: refuse; `maxConnections` open: refuse)
 * -> RESOLVE (a literal is itself; a name is resolved once, by the gateway) -> CHECK (every
 * address, by the policy; none allowed: refuse) -> CONNECT (the allowed addresses in the
 * resolver's order, each by its IP, never by name: no second lookup, so a rebinding resolver
 * cannot swap what was checked) -> OPEN (the socket is tracked by the gateway; its slot is freed
 * when it closes). A slot is taken before resolving, so dials in flight count; every path out
 * frees it once. After each await the gateway may have stopped: the socket is then destroyed.
 */
import { connect, type Socket } from "node:net";
import type { Logger } from "../common/logger.ts";
import { parseHost } from "./address.ts";
import type { EgressPolicy } from "./policy.ts";
import type { EgressLedger, LedgerEntry } from "./record.ts";
import { UpstreamRelay } from "./relay.ts";

/** Addresses for a name, in the order to try them (dns.promises.lookup with all and verbatim). */
export type Resolver = (name: string) => Promise<{ address: string; family: number }[]>;

/** What dialing, tunnelling and the services need of the gateway. */
export interface GatewayContext {
  readonly logger: Logger;
  readonly policy: EgressPolicy;
  readonly resolver: Resolver;
  readonly ledger: EgressLedger;
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  /** Why new destinations are refused now (closing, the byte limit), or undefined. */
  stopped(): string | undefined;
  /** Takes a connection slot; false when `maxConnections` are taken. */
  acquire(): boolean;
  release(): void;
  /** Ends with the gateway (close, the byte limit). */
  track(socket: Socket): void;
  /** Tells the executor (onEvent) of a refusal. */
  refused(entry: LedgerEntry): void;
}

export type DialFailure = "refused" | "unresolved" | "unreachable";
export type DialResult = { ok: true; socket: Socket; entry: LedgerEntry; relay: UpstreamRelay | undefined } | { ok: false; failure: DialFailure; code: string | undefined; message: string; entry: LedgerEntry };

/** `host:port`, with brackets for IPv6 addresses. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

function refuse(ctx: GatewayContext, entry: LedgerEntry, address: string | undefined, rule: string, reason: string): DialResult {
  entry.refuse(address, rule, reason);
  ctx.refused(entry);
  const where = address === undefined || address === entry.host ? hostPort(entry.host, entry.port) : `${hostPort(address, entry.port)} (${entry.host})`;
  ctx.logger.info("egress refused", { protocol: entry.protocol, host: entry.host, port: entry.port, address, rule });
  return { ok: false, failure: "refused", code: undefined, message: `airlock egress: refused ${where}: ${reason}`, entry };
}

/** `tunnel`: the upstream socket reads into its UpstreamRelay (join it to the client); `stream`: a plain socket (HTTP requests). */
export async function dial(ctx: GatewayContext, protocol: LedgerEntry["protocol"], host: string, port: number, mode: "tunnel" | "stream"): Promise<DialResult> {
  const entry = ctx.ledger.open(protocol, host, port);
  const stopped = ctx.stopped();
  if (stopped) return refuse(ctx, entry, undefined, "limit", stopped);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return refuse(ctx, entry, undefined, "invalid", `port ${port} is not a port (1-65535)`);
  let parsed;
  try {
    parsed = parseHost(host);
  } catch (error) {
    return refuse(ctx, entry, undefined, "invalid", (error as Error).message);
  }
  if (!ctx.acquire()) {
    return refuse(ctx, entry, undefined, "limit", `the job's limit of ${ctx.maxConnections} connections at once (resources.connections) was reached`);
  }
  let released = false;
  const release = (): void => {
    if (!released) ctx.release();
    released = true;
  };
  const fail = (failure: DialFailure, code: string | undefined, error: string): DialResult => {
    release();
    entry.fail(error);
    return { ok: false, failure, code, message: `airlock egress: ${error}`, entry };
  };

  let candidates: string[];
  if (parsed.kind === "ip") candidates = [parsed.address];
  else {
    try {
      candidates = canonicalAnswers(await ctx.resolver(parsed.name));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return fail("unresolved", code, `could not resolve ${parsed.name}: ${code ?? (error as Error).message}`);
    }
    if (candidates.length === 0) return fail("unresolved", "ENODATA", `could not resolve ${parsed.name}: no addresses`);
  }
  const checked = candidates.map((address) => ({ address, verdict: ctx.policy.check({ host, address, port }) }));
  const allowed = checked.filter((item) => item.verdict.allowed);
  const first = checked[0];
  if (allowed.length === 0 || !first) {
    release();
    return refuse(ctx, entry, first?.address, first?.verdict.rule ?? "refused", first?.verdict.reason ?? "refused");
  }
  let lastError: NodeJS.ErrnoException | undefined;
  for (const { address, verdict } of allowed) {
    const now = ctx.stopped();
    if (now) {
      release();
      return refuse(ctx, entry, address, "limit", now);
    }
    try {
      const relay = mode === "tunnel" ? new UpstreamRelay(entry) : undefined;
      const socket = await connectTo(address, port, ctx.connectTimeoutMs, relay);
      const after = ctx.stopped();
      if (after) {
        socket.destroy();
        release();
        return refuse(ctx, entry, address, "limit", after);
      }
      entry.allow(address, verdict);
      socket.once("close", release);
      ctx.track(socket);
      ctx.logger.debug("egress connected", { protocol, host, port, address, rule: verdict.rule });
      return { ok: true, socket, entry, relay };
    } catch (error) {
      lastError = error as NodeJS.ErrnoException;
    }
  }
  const last = allowed[allowed.length - 1];
  if (last) entry.allow(last.address, last.verdict);
  const where = last && last.address !== host ? `${hostPort(last.address, port)} (${host})` : hostPort(host, port);
  return fail("unreachable", lastError?.code, `could not connect to ${where}: ${lastError?.message ?? "failed"}`);
}

/** The resolver's answers as canonical addresses, in its order, without repeats or non-addresses. */
function canonicalAnswers(answers: { address: string; family: number }[]): string[] {
  const seen = new Set<string>();
  for (const answer of answers) {
    try {
      const parsed = parseHost(answer.address);
      if (parsed.kind === "ip") seen.add(parsed.address);
    } catch {
      // A resolver answer that is no address is skipped.
    }
  }
  return [...seen];
}

/** Lookups are never done here: `host` is always an IP literal. */
const noLookup = (hostname: string, _options: unknown, callback: (error: Error) => void): void => {
  callback(new Error(`egress: refusing to look up ${hostname} at connect time`));
};

/** Connects to exactly `address` (an IPv4-mapped address: to its IPv4 address). */
export function connectTo(address: string, port: number, timeoutMs: number, relay?: UpstreamRelay): Promise<Socket> {
  const target = address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target, port, noDelay: true, allowHalfOpen: true, lookup: noLookup as never, ...(relay ? { onread: relay.onread() } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connect ETIMEDOUT ${hostPort(target, port)} (after ${timeoutMs} ms)`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    const onError = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      // Until a service takes the socket over (its own handlers end it): never an unhandled error.
      socket.on("error", () => undefined);
      relay?.bind(socket);
      resolve(socket);
    });
  });
}
