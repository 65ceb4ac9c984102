/**
 * A job's egress gateway: the only way out of a sandbox with `network: internet`. It listens on
 * a unix socket that the sandbox's forwarder relays to; each accepted connection starts with one
 * service byte: `H` an HTTP proxy (absolute-URL requests and CONNECT), `S` SOCKS5, `D` DNS over
 * TCP framing. Anything else is closed. The gateway resolves names itself, checks every address
 * with the policy and connects to the checked address (dial.ts); every destination is recorded
 * (record.ts).
 *
 * States: LISTENING -> LIMITED (the byte limit was passed: every connection was ended, new
 * destinations are refused; the listener stays so clients get a refusal, not a hang) -> CLOSED
 * (`close`: listener closed, every socket destroyed, entries finished; idempotent, later calls
 * get the same promise). Per accepted connection: TAG (first byte, 30 s) -> SERVICE. Limits:
 * `maxConnections` upstream connections at once (dial.ts takes and frees the slots); accepted
 * connections beyond 4x that (plus 64) are closed at once, so idle clients cannot use up the
 * executor's descriptors. Everything runs on the event loop: no locks.
 */
import { lstat, unlink, chmod } from "node:fs/promises";
import { lookup } from "node:dns/promises";
import { createServer, type Server, type Socket } from "node:net";
import { systemClock, type Clock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import type { EgressConnection, EgressRecord } from "../protocol/egress.ts";
import { SandboxError, ValidationError } from "../protocol/errors.ts";
import type { GatewayContext, Resolver } from "./dial.ts";
import { handleDns } from "./dns.ts";
import { HttpProxy } from "./http-proxy.ts";
import type { EgressPolicy } from "./policy.ts";
import { EgressLedger, type LedgerEntry } from "./record.ts";
import { handleSocks } from "./socks.ts";

export interface EgressGatewayOptions {
  /** Where to listen (made 0666, so the sandbox's user can connect). */
  socketPath: string;
  policy: EgressPolicy;
  /** Default: dns.promises.lookup(name, { all: true, verbatim: true }). */
  resolver?: Resolver;
  /** The job's egress limit (resources.egress): bytes in and out together. */
  maxBytes?: number;
  /** Upstream connections open at once. */
  maxConnections: number;
  logger: Logger;
  /** Each refusal (its entry) and a limit hit (its sentence), for the running step's log. */
  onEvent?: (event: EgressConnection | string) => void;
  clock?: Clock;
  /** Per address tried; default 10 s. */
  connectTimeoutMs?: number;
  /** Entries kept in the record; default 5000 (beyond: counted in `dropped`). */
  maxEntries?: number;
}

const TAG_TIMEOUT_MS = 30_000;

export const defaultResolver: Resolver = async (name) => lookup(name, { all: true, verbatim: true });

export class EgressGateway implements GatewayContext {
  readonly logger: Logger;
  readonly policy: EgressPolicy;
  readonly resolver: Resolver;
  readonly ledger: EgressLedger;
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  readonly socketPath: string;
  private readonly server: Server;
  private readonly http: HttpProxy;
  private readonly onEvent: ((event: EgressConnection | string) => void) | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly maxClients: number;
  private clients = 0;
  private open = 0;
  private closing: Promise<void> | undefined;

  private constructor(options: EgressGatewayOptions) {
    if (!Number.isInteger(options.maxConnections) || options.maxConnections < 1) throw new ValidationError("egress: maxConnections must be a positive integer");
    this.logger = options.logger;
    this.policy = options.policy;
    this.resolver = options.resolver ?? defaultResolver;
    this.maxConnections = options.maxConnections;
    this.maxClients = options.maxConnections * 4 + 64;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.socketPath = options.socketPath;
    this.onEvent = options.onEvent;
    this.ledger = new EgressLedger({
      policy: {
        allow: options.policy.allow,
        deny: options.policy.deny,
        ...(options.policy.jobAllow ? { jobAllow: options.policy.jobAllow } : {}),
        ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
        maxConnections: options.maxConnections,
      },
      clock: options.clock ?? systemClock,
      maxBytes: options.maxBytes,
      maxEntries: options.maxEntries,
      onLimit: (sentence) => this.limitHit(sentence),
    });
    this.http = new HttpProxy(this);
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  static async start(options: EgressGatewayOptions): Promise<EgressGateway> {
    const gateway = new EgressGateway(options);
    await gateway.listen();
    return gateway;
  }

  /** The record so far (final once closed). */
  record(): EgressRecord {
    return this.ledger.record();
  }

  /** Closes the listener and every connection; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const socket of this.sockets) socket.destroy();
      await closed;
      this.ledger.finishAll();
      this.logger.debug("egress gateway closed", { socketPath: this.socketPath });
    })();
    return this.closing;
  }

  stopped(): string | undefined {
    if (this.closing) return "the job's gateway is closing";
    return this.ledger.limitHit;
  }

  acquire(): boolean {
    if (this.open >= this.maxConnections) return false;
    this.open += 1;
    return true;
  }

  release(): void {
    this.open -= 1;
  }

  track(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
  }

  refused(entry: LedgerEntry): void {
    this.emit(entry.toJSON(this.ledger.now()));
  }

  private emit(event: EgressConnection | string): void {
    try {
      this.onEvent?.(event);
    } catch (error) {
      this.logger.warn("egress onEvent failed", { error: (error as Error).message });
    }
  }

  private limitHit(sentence: string): void {
    this.logger.warn("egress limit reached; ending every connection", { limit: sentence });
    for (const socket of this.sockets) socket.destroy();
    this.emit(sentence);
  }

  private async listen(): Promise<void> {
    const path = this.socketPath;
    const stale = await lstat(path).catch(() => undefined);
    if (stale?.isSocket()) await unlink(path);
    else if (stale) throw new SandboxError(`egress: ${path} exists and is not a socket`);
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen({ path, readableAll: true, writableAll: true }, () => {
        this.server.off("error", reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw new SandboxError(`egress: cannot listen on ${path}: ${(error as Error).message}`, { cause: error });
    });
    this.server.on("error", (error) => this.logger.error("egress listener failed", { error: error.message }));
    await chmod(path, 0o666);
    this.logger.debug("egress gateway listening", { socketPath: path });
  }

  private accept(socket: Socket): void {
    socket.on("error", (error) => this.logger.debug("egress client error", { error: error.message }));
    if (this.closing || this.clients >= this.maxClients) {
      if (!this.closing) this.logger.warn("egress: too many client connections; closing one", { max: this.maxClients });
      socket.destroy();
      return;
    }
    this.clients += 1;
    socket.once("close", () => (this.clients -= 1));
    this.track(socket);
    socket.setTimeout(TAG_TIMEOUT_MS, () => socket.destroy());
    const onReadable = (): void => {
      const tag = socket.read(1) as Buffer | null;
      if (tag === null) return;
      socket.off("readable", onReadable);
      socket.off("end", onEnd);
      socket.setTimeout(0);
      this.dispatch(String.fromCharCode(tag[0] ?? 0), socket);
    };
    const onEnd = (): void => {
      socket.destroy();
    };
    socket.on("readable", onReadable);
    socket.once("end", onEnd);
  }

  private dispatch(tag: string, socket: Socket): void {
    switch (tag) {
      case "H":
        this.http.handle(socket);
        return;
      case "S":
        handleSocks(this, socket);
        return;
      case "D":
        handleDns(this, socket);
        return;
      default:
        this.logger.debug("egress: unknown service tag; closing", { tag: tag.charCodeAt(0) });
        socket.destroy();
    }
  }
}
