/**
 * Exact-length reads from a socket, for the binary handshakes (SOCKS5, DNS framing). One read
 * waits at a time (READING -> resolved, or rejected when the socket ends or fails first);
 * `detach` stops reading, pauses the socket and hands back what was read beyond the last read
 * (the start of the tunnelled bytes).
 */
import type { Socket } from "node:net";

export class ByteReader {
  private readonly socket: Socket;
  private buffered: Buffer = Buffer.alloc(0);
  private waiter: { size: number; resolve: (bytes: Buffer) => void; reject: (error: Error) => void } | undefined;
  private ended: Error | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    this.settle();
  };
  private readonly onEnd = (): void => {
    this.ended ??= new Error("the client closed the connection");
    this.settle();
  };

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
  }

  /** The next `size` bytes. */
  read(size: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error("ByteReader: one read at a time"));
    return new Promise((resolve, reject) => {
      this.waiter = { size, resolve, reject };
      this.settle();
    });
  }

  /** Stops reading; returns the bytes read but not yet asked for. */
  detach(): Buffer {
    this.socket.pause();
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }

  private settle(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    if (this.buffered.length >= waiter.size) {
      this.waiter = undefined;
      const bytes = this.buffered.subarray(0, waiter.size);
      this.buffered = this.buffered.subarray(waiter.size);
      waiter.resolve(bytes);
    } else if (this.ended) {
      this.waiter = undefined;
      waiter.reject(this.ended);
    }
  }
}
