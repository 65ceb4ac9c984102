/** The file the world's hosts serve at /file: deterministic, so a test knows its hash. */
import { createHash } from "node:crypto";

export const FILE_BYTES = 3 * 1024 * 1024 + 17;

export function worldFile(): Buffer {
  const out = Buffer.alloc(FILE_BYTES);
  let state = 0x2545f491;
  for (let index = 0; index < out.length; index += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[index] = state & 0xff;
  }
  return out;
}

export function worldFileSha256(): string {
  return createHash("sha256").update(worldFile()).digest("hex");
}
