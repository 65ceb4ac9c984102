/**
 * The host's end of the agent's virtio-serial port (see agent/agent.c for the wire format):
 * frames of 1 byte type, 4 bytes big-endian length, payload. Everything the guest sends is
 * untrusted: frames are bounded, and unknown or unexpected frames end the channel.
 *
 * One request at a time: `request` installs the handler that receives every frame until it
 * says the request is done; the sandbox serializes its calls (one step, or one tar, at a time).
 */
import type { Socket } from "node:net";
import { SandboxError } from "../../protocol/index.ts";

export const MAX_FRAME = 1 << 20;

export interface Frame {
  type: string;
  payload: Buffer;
}

export function encodeFrame(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeUInt32BE(body.byteLength, 1);
  return Buffer.concat([head, body]);
}

export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.buffer.length >= 5) {
      const length = this.buffer.readUInt32BE(1);
      if (length > MAX_FRAME) throw new SandboxError(`the guest agent sent a frame of ${length} bytes (at most ${MAX_FRAME})`);
      if (this.buffer.length < 5 + length) break;
      frames.push({ type: String.fromCharCode(this.buffer[0] ?? 0), payload: this.buffer.subarray(5, 5 + length) });
      this.buffer = this.buffer.subarray(5 + length);
    }
    return frames;
  }
}

/** Handles one frame of a request; returns true when the request is complete. */
export type FrameHandler = (frame: Frame) => boolean;

export class AgentChannel {
  private readonly socket: Socket;
  private readonly decoder = new FrameDecoder();
  private handler: { onFrame: FrameHandler; done: () => void; fail: (error: Error) => void } | undefined;
  private failure: Error | undefined;
  private readyWaiters: { resolve: (info: string) => void; reject: (error: Error) => void }[] = [];
  private readyInfo: string | undefined;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (error) => this.fail(new SandboxError(`the VM's agent channel failed: ${error.message}`)));
    socket.on("close", () => this.fail(new SandboxError("the VM's agent channel closed")));
  }

  /** Resolves with the agent's hello once it booted. */
  ready(): Promise<string> {
    if (this.readyInfo !== undefined) return Promise.resolve(this.readyInfo);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  get broken(): Error | undefined {
    return this.failure;
  }

  /** Sends a frame and feeds every following frame to `onFrame` until it returns true. */
  request(type: string, payload: Buffer | string, onFrame: FrameHandler): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.handler) return Promise.reject(new SandboxError("the agent channel is busy"));
    return new Promise<void>((resolve, reject) => {
      this.handler = {
        onFrame,
        done: () => {
          this.handler = undefined;
          resolve();
        },
        fail: (error) => {
          this.handler = undefined;
          reject(error);
        },
      };
      this.socket.write(encodeFrame(type, payload));
    });
  }

  /** Sends a frame outside any request (kill, power off). */
  send(type: string, payload: Buffer | string = ""): void {
    if (!this.failure) this.socket.write(encodeFrame(type, payload));
  }

  close(): void {
    this.fail(new SandboxError("the VM was stopped"));
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.fail(error as Error);
      this.socket.destroy();
      return;
    }
    for (const frame of frames) {
      if (frame.type === "H" && this.readyInfo === undefined) {
        this.readyInfo = frame.payload.toString("utf8");
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve(this.readyInfo);
        continue;
      }
      const handler = this.handler;
      if (!handler) {
        this.fail(new SandboxError(`the guest agent sent an unexpected frame "${frame.type}"`));
        this.socket.destroy();
        return;
      }
      let complete: boolean;
      try {
        complete = handler.onFrame(frame);
      } catch (error) {
        handler.fail(error as Error);
        continue;
      }
      if (complete) handler.done();
    }
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(error);
    this.handler?.fail(error);
  }
}
