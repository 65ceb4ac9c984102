/**
 * Reading an upstream connection fast, and tunnels (CONNECT, SOCKS5, upgrades) without parsing.
 *
 * An UpstreamRelay's socket reads straight into one buffer of its own (net `onread`, 256 KiB: far
 * fewer reads than 64 KiB chunks, and no allocation per read). Each read is handed to the
 * consumer as a view of that buffer; reading stays stopped until the consumer calls `done`
 * (its writes of the view have completed), so the buffer is never overwritten while the
 * kernel still copies from it. Before a consumer takes the relay (the reply to the client not yet
 * sent), reads are copied aside and reading stops: protocols whose server speaks first work.
 * Every read is counted into the entry (bytes in).
 *
 * A tunnel (`join`): upstream -> client through the relay; client -> upstream by `pipe`. The
 * upstream's EOF ends the client's writing side after the last write, the client's EOF ends the
 * upstream's (half-closed tunnels stay open until both are done); an error on either side
 * destroys both; the client closing destroys the upstream.
 */
import type { Socket } from "node:net";
import type { LedgerEntry } from "./record.ts";

const BUFFER_BYTES = 256 * 1024;

export interface RelayConsumer {
  /** A view valid until `done` is called. */
  data(view: Buffer, done: () => void): void;
  /** The upstream's EOF. */
  end(): void;
}

export class UpstreamRelay {
  readonly entry: LedgerEntry;
  private readonly buffer = Buffer.allocUnsafe(BUFFER_BYTES);
  private socket: Socket | undefined;
  private consumer: RelayConsumer | undefined;
  private early: Buffer[] = [];
  private ended = false;

  constructor(entry: LedgerEntry) {
    this.entry = entry;
  }

  /** The `onread` option for net.connect. */
  onread(): { buffer: Buffer; callback: (bytes: number, buffer: Buffer) => boolean } {
    return { buffer: this.buffer, callback: (bytes, buffer) => this.read(bytes, buffer) };
  }

  /** The connected upstream socket (made with `onread()`). */
  bind(socket: Socket): void {
    this.socket = socket;
    socket.once("end", () => {
      this.ended = true;
      if (this.consumer && this.early.length === 0) this.consumer.end();
    });
    // Flowing, so the stream's 'end' is emitted at EOF (no data events come: onread takes the bytes).
    socket.resume();
  }

  /** Hands reads (those copied aside first) to `consumer`. */
  take(consumer: RelayConsumer): void {
    this.consumer = consumer;
    const early = this.early;
    const next = (): void => {
      const chunk = early.shift();
      if (chunk) consumer.data(chunk, next);
      else {
        this.early = [];
        if (this.ended) consumer.end();
        else this.resume();
      }
    };
    next();
  }

  /** Joins the client as a tunnel; bytes the client sent early (`head`) go upstream first. */
  join(client: Socket, head?: Buffer): void {
    const upstream = this.socket;
    if (!upstream) throw new Error("UpstreamRelay: join before bind");
    const entry = this.entry;
    client.on("data", (chunk: Buffer) => entry.addOut(chunk.length));
    if (head && head.length > 0) {
      entry.addOut(head.length);
      upstream.write(head);
    }
    client.pipe(upstream);
    const destroy = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", destroy);
    upstream.on("error", destroy);
    client.once("close", () => {
      upstream.destroy();
      entry.finish();
    });
    upstream.once("close", () => {
      client.end();
      entry.finish();
    });
    this.take({
      data: (view, done) => {
        if (client.destroyed) return;
        client.write(view, () => done());
      },
      end: () => client.end(),
    });
  }

  private read(bytes: number, buffer: Buffer): boolean {
    this.entry.addIn(bytes);
    const consumer = this.consumer;
    if (!consumer) {
      this.early.push(Buffer.from(buffer.subarray(0, bytes)));
      return false;
    }
    // `done` called before this returns (nothing was written): keep reading (false would stop it after a resume).
    let returned = false;
    let doneAlready = false;
    consumer.data(buffer.subarray(0, bytes), () => {
      if (returned) this.resume();
      else doneAlready = true;
    });
    returned = true;
    return doneAlready;
  }

  private resume(): void {
    const socket = this.socket;
    if (socket && !socket.destroyed) socket.resume();
  }
}
