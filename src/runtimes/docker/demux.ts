/**
 * Splits Docker's multiplexed attach stream (non-TTY containers) into stdout and stderr. Each
 * frame is an 8-byte header (stream id, three zero bytes, big-endian payload length) followed by
 * the payload; frames arrive cut at arbitrary points, so partial headers and payloads are kept
 * until the rest comes. Payload bytes are handed on as soon as they arrive, not per whole frame.
 */
export type StreamName = "stdout" | "stderr";

const HEADER = 8;

export class Demuxer {
  private readonly emit: (chunk: Buffer, stream: StreamName) => void;
  private header = Buffer.alloc(HEADER);
  private headerFill = 0;
  private remaining = 0;
  private stream: StreamName = "stdout";

  constructor(emit: (chunk: Buffer, stream: StreamName) => void) {
    this.emit = emit;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset);
        this.emit(chunk.subarray(offset, offset + take), this.stream);
        this.remaining -= take;
        offset += take;
        continue;
      }
      const take = Math.min(HEADER - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + take);
      this.headerFill += take;
      offset += take;
      if (this.headerFill < HEADER) return;
      this.headerFill = 0;
      // Stream 2 is stderr; 0 (stdin echo) and 1 go to stdout.
      this.stream = this.header[0] === 2 ? "stderr" : "stdout";
      this.remaining = this.header.readUInt32BE(4);
    }
  }
}
