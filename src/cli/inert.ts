/**
 * Makes job output inert before it reaches a terminal. A job's log and diff are written by
 * untrusted code: escape sequences in them could retitle the window, clear the screen, set the
 * clipboard (OSC 52), or answer back to the terminal. Kept as they are: tab, newline, carriage
 * return and colour sequences (SGR, `ESC [ digits m`). Every other C0 control, DEL and the C1
 * controls (U+0080..U+009F in UTF-8) become visible text (`\x1b`, `\u009b`); all other bytes pass
 * unchanged, so a diff still applies and non-UTF-8 text is not mangled.
 *
 * Streaming: a chunk may end inside a colour sequence or a UTF-8 pair; that tail is held back
 * until the next chunk (or `end`) tells what it is.
 */

const ESC = 0x1b;
/** Longest SGR sequence held back while waiting for its end. */
const MAX_SGR = 64;

function visible(byte: number): Buffer {
  return Buffer.from(`\\x${byte.toString(16).padStart(2, "0")}`);
}

/** Length of the SGR sequence at `at` (ESC [ [0-9;:]* m), 0 if it is none, -1 if the data ends first. */
function sgrLength(data: Buffer, at: number): number {
  if (at + 1 >= data.length) return -1;
  if (data[at + 1] !== 0x5b) return 0;
  for (let index = at + 2; index < data.length && index - at < MAX_SGR; index += 1) {
    const byte = data[index] ?? 0;
    if (byte === 0x6d) return index - at + 1;
    if (!((byte >= 0x30 && byte <= 0x39) || byte === 0x3b || byte === 0x3a)) return 0;
  }
  return data.length - at < MAX_SGR ? -1 : 0;
}

export class InertText {
  private held = Buffer.alloc(0);

  push(chunk: Uint8Array): Buffer {
    const data = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : Buffer.from(chunk);
    this.held = Buffer.alloc(0);
    return this.convert(data, false);
  }

  end(): Buffer {
    const rest = this.held;
    this.held = Buffer.alloc(0);
    return this.convert(rest, true);
  }

  private convert(data: Buffer, final: boolean): Buffer {
    const out: Buffer[] = [];
    let start = 0;
    const flush = (until: number) => {
      if (until > start) out.push(data.subarray(start, until));
    };
    for (let index = 0; index < data.length; index += 1) {
      const byte = data[index] ?? 0;
      if (byte === ESC) {
        const length = sgrLength(data, index);
        if (length > 0) {
          index += length - 1;
          continue;
        }
        if (length < 0 && !final) {
          flush(index);
          this.held = Buffer.from(data.subarray(index));
          return Buffer.concat(out);
        }
      } else if (byte === 0xc2) {
        if (index + 1 >= data.length && !final) {
          flush(index);
          this.held = Buffer.from(data.subarray(index));
          return Buffer.concat(out);
        }
        const next = data[index + 1] ?? 0;
        if (next >= 0x80 && next <= 0x9f) {
          flush(index);
          out.push(Buffer.from(`\\u00${next.toString(16)}`));
          index += 1;
          start = index + 1;
        }
        continue;
      } else if (byte >= 0x20 && byte !== 0x7f) {
        continue;
      } else if (byte === 0x09 || byte === 0x0a || byte === 0x0d) {
        continue;
      }
      flush(index);
      out.push(visible(byte));
      start = index + 1;
    }
    flush(data.length);
    return Buffer.concat(out);
  }
}

/** The whole of `data`, inert. */
export function inert(data: Uint8Array): Buffer {
  const converter = new InertText();
  return Buffer.concat([converter.push(data), converter.end()]);
}
