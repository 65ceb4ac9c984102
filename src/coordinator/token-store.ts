/** Generating the coordinator's tokens into its data dir on first start, and keeping them private. */
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { readTokenFile, tokenPath, type TokenKind } from "../common/token-files.ts";
import { newToken } from "../common/tokens.ts";

/**
 * The token to use: the given one, the stored one, or a new one written to the data dir (0600).
 * A stored token others could read is made private again (`tightened` says it was).
 */
export function ensureToken(dataDir: string, kind: TokenKind, given: string | undefined): { token: string; path: string | undefined; generated: boolean; tightened: boolean } {
  if (given) return { token: given, path: undefined, generated: false, tightened: false };
  const path = tokenPath(dataDir, kind);
  const stored = readTokenFile(dataDir, kind);
  if (stored) {
    const loose = (statSync(path).mode & 0o077) !== 0;
    if (loose) chmodSync(path, 0o600);
    return { token: stored, path, generated: false, tightened: loose };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = newToken(kind === "executor" ? "aet" : "aat");
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
  return { token, path, generated: true, tightened: false };
}
