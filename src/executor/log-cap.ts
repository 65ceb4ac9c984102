/**
 * The per-job log cap. The first half of the budget is the job's head, shared by its entries in
 * order and shipped live. Output past it is not dropped silently: each entry that overflows keeps
 * its last half-budget in a ring, and when it closes, a line stating how many bytes were left out
 * is emitted, then that tail.
 */

export class LogBudget {
  readonly capBytes: number;
  private headLeft: number;

  constructor(capBytes: number) {
    this.capBytes = capBytes;
    this.headLeft = Math.floor(capBytes / 2);
  }

  /** Takes up to `bytes` from the shared head budget; returns how many were granted. */
  take(bytes: number): number {
    const granted = Math.min(bytes, this.headLeft);
    this.headLeft -= granted;
    return granted;
  }

  get tailBytes(): number {
    return Math.max(1, Math.ceil(this.capBytes / 2));
  }
}

/** Caps one entry's stream against the job's budget. */
export class EntryCap {
  private readonly budget: LogBudget;
  private tail: Buffer[] = [];
  private tailSize = 0;
  private omitted = 0;
  private overflowing = false;

  constructor(budget: LogBudget) {
    this.budget = budget;
  }

  /** Returns the bytes to ship now. */
  push(chunk: Buffer): Buffer {
    if (this.overflowing) {
      this.keepTail(chunk);
      return Buffer.alloc(0);
    }
    const granted = this.budget.take(chunk.length);
    if (granted === chunk.length) return chunk;
    this.overflowing = true;
    this.keepTail(chunk.subarray(granted));
    const notice = Buffer.from(`\n[airlock] log cap of ${this.budget.capBytes} bytes reached; the rest of this entry's output is held back and its tail shown when it ends\n`);
    return Buffer.concat([chunk.subarray(0, granted), notice]);
  }

  /** Returns what to ship when the entry ends: the gap statement and the kept tail. */
  end(): Buffer {
    if (!this.overflowing) return Buffer.alloc(0);
    const tail = Buffer.concat(this.tail);
    this.tail = [];
    this.tailSize = 0;
    const notice = Buffer.from(`\n[airlock] ${this.omitted} bytes omitted here (log cap); the last ${tail.length} bytes follow\n`);
    return Buffer.concat([notice, tail]);
  }

  get omittedBytes(): number {
    return this.omitted;
  }

  private keepTail(chunk: Buffer): void {
    const limit = this.budget.tailBytes;
    this.tail.push(chunk);
    this.tailSize += chunk.length;
    while (this.tailSize > limit) {
      const first = this.tail[0] as Buffer;
      const excess = this.tailSize - limit;
      if (first.length <= excess) {
        this.tail.shift();
        this.tailSize -= first.length;
        this.omitted += first.length;
      } else {
        this.tail[0] = first.subarray(excess);
        this.tailSize -= excess;
        this.omitted += excess;
      }
    }
  }
}
