/**
 * The coordinator's tokens: those given (flags, env, token files), or else the data dir's,
 * generated on first start and kept private. Several of a kind may be valid at once (a rotation
 * window); files are read again when the coordinator is told to reload (SIGHUP), so rotating
 * needs no restart.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { parseTokenList, readTokenFile, readTokenList, tokenPath, type TokenKind } from "../common/token-files.ts";
import { newToken } from "../common/tokens.ts";

export interface TokenSources {
  /** Tokens given on the command line or in the environment (comma-separated there). */
  given: readonly string[];
  /** Files of tokens, one per line. */
  files: readonly string[];
  /** The flag the files came from, for errors. */
  fileFlag: string;
}

export interface ResolvedTokens {
  /** Every token accepted; the first is the one this coordinator hands out (the demo, tests). */
  tokens: string[];
  /** The data dir's file, when the tokens came from there. */
  path: string | undefined;
  generated: boolean;
  /** The data dir's file was readable by others and was made private again. */
  tightened: boolean;
}

export function resolveTokens(dataDir: string, kind: TokenKind, sources: TokenSources): ResolvedTokens {
  const fromFiles = sources.files.flatMap((file) => readTokenList(file, sources.fileFlag));
  const tokens = [...new Set([...sources.given, ...fromFiles])];
  if (tokens.length > 0) return { tokens, path: undefined, generated: false, tightened: false };
  return ensureToken(dataDir, kind);
}

/** The data dir's tokens for `kind` (made private when others could read them), or a new one written there (0600). */
function ensureToken(dataDir: string, kind: TokenKind): ResolvedTokens {
  const path = tokenPath(dataDir, kind);
  if (readTokenFile(dataDir, kind)) {
    const loose = (statSync(path).mode & 0o077) !== 0;
    if (loose) chmodSync(path, 0o600);
    return { tokens: parseTokenList(readFileSync(path, "utf8")), path, generated: false, tightened: loose };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = newToken(kind === "executor" ? "aet" : "aat");
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
  return { tokens: [token], path, generated: true, tightened: false };
}
