/**
 * Streaming secret redaction over bytes.
 *
 * Every secret is registered in the forms it commonly takes in output: raw, base64 at each of the
 * three byte alignments (and the URL-safe alphabet), URL-encoded, and JSON-escaped. Output may
 * split a secret across writes, so `push()` holds back the longest tail of the stream that is still
 * the beginning of some pattern; it is released once later bytes show it is not a secret, or at
 * `end()`. Only such tails are held, so ordinary output is not delayed.
 */

export const REDACTED = Buffer.from("[REDACTED]");

/** Base64 of `secret` preceded by 0, 1 or 2 unknown bytes: the characters that do not depend on neighbours. */
function base64Forms(secret: Buffer): string[] {
  const forms: string[] = [];
  for (let shift = 0; shift < 3; shift += 1) {
    const padded = Buffer.concat([Buffer.alloc(shift), secret]);
    const encoded = padded.toString("base64");
    const skip = Math.ceil((shift * 8) / 6);
    const stable = Math.floor(((shift + secret.length) * 8) / 6);
    const middle = encoded.slice(skip, stable);
    if (middle.length >= 6) {
      forms.push(middle);
      forms.push(middle.replace(/\+/g, "-").replace(/\//g, "_"));
    }
  }
  return forms;
}

/** All encodings of a secret worth masking (deduplicated, longest first). */
export function secretForms(secret: string): Buffer[] {
  if (secret.length === 0) return [];
  const raw = Buffer.from(secret, "utf8");
  const texts = new Set<string>([secret, ...base64Forms(raw)]);
  texts.add(encodeURIComponent(secret));
  texts.add(encodeURIComponent(secret).replace(/%20/g, "+"));
  texts.add(JSON.stringify(secret).slice(1, -1));
  texts.add(JSON.stringify(JSON.stringify(secret).slice(1, -1)).slice(1, -1));
  return [...texts]
    .filter((text) => text.length > 0)
    .map((text) => Buffer.from(text, "utf8"))
    .sort((a, b) => b.length - a.length);
}

export class Redactor {
  private readonly patterns: Buffer[];
  private held: Buffer = Buffer.alloc(0);

  constructor(secrets: Iterable<string>) {
    const unique = new Map<string, Buffer>();
    for (const secret of secrets) for (const form of secretForms(secret)) unique.set(form.toString("hex"), form);
    this.patterns = [...unique.values()].sort((a, b) => b.length - a.length);
  }

  /** A redactor with no patterns passes bytes straight through. */
  get active(): boolean {
    return this.patterns.length > 0;
  }

  /** Redacts what can be decided now; returns the bytes safe to emit. */
  push(chunk: Uint8Array): Buffer {
    if (!this.active) return Buffer.from(chunk);
    const data = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : Buffer.from(chunk);
    const { output, consumed } = this.scan(data, false);
    this.held = data.subarray(consumed);
    return output;
  }

  /** Emits everything still held (the stream ended). */
  end(): Buffer {
    if (!this.active) return Buffer.alloc(0);
    const { output } = this.scan(this.held, true);
    this.held = Buffer.alloc(0);
    return output;
  }

  /** Bytes held back because they might begin a secret. */
  get pending(): number {
    return this.held.length;
  }

  /** Replaces whole matches (leftmost, longest); when not final, stops before a tail that could still grow into one. */
  private scan(data: Buffer, final: boolean): { output: Buffer; consumed: number } {
    const parts: Buffer[] = [];
    let position = 0;
    for (;;) {
      let best = -1;
      let bestLength = 0;
      for (const pattern of this.patterns) {
        const found = data.indexOf(pattern, position);
        if (found >= 0 && (best < 0 || found < best || (found === best && pattern.length > bestLength))) {
          best = found;
          bestLength = pattern.length;
        }
      }
      if (best < 0) break;
      parts.push(data.subarray(position, best), REDACTED);
      position = best + bestLength;
    }
    let end = data.length;
    if (!final) {
      const longest = this.patterns[0]?.length ?? 1;
      for (let index = Math.max(position, data.length - longest + 1); index < data.length; index += 1) {
        if (this.couldStartAt(data, index)) {
          end = index;
          break;
        }
      }
    }
    parts.push(data.subarray(position, end));
    return { output: Buffer.concat(parts), consumed: end };
  }

  /** True when data[index..] is a proper prefix of some pattern (it runs off the end of the data). */
  private couldStartAt(data: Buffer, index: number): boolean {
    const rest = data.length - index;
    for (const pattern of this.patterns) {
      if (pattern.length > rest && data.compare(pattern, 0, rest, index, data.length) === 0) return true;
    }
    return false;
  }
}
