/**
 * Tokens kept in a data dir (mode 0600): generated on a coordinator's first start when none is
 * given, and found there by the CLI and a local executor.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { newToken } from "./tokens.ts";

export const TOKEN_FILES = { executor: "executor-token", api: "api-token" } as const;
export type TokenKind = keyof typeof TOKEN_FILES;

export function tokenPath(dataDir: string, kind: TokenKind): string {
  return join(dataDir, TOKEN_FILES[kind]);
}

export function readTokenFile(dataDir: string, kind: TokenKind): string | undefined {
  const path = tokenPath(dataDir, kind);
  if (!existsSync(path)) return undefined;
  const value = readFileSync(path, "utf8").trim();
  return value || undefined;
}

/** The token to use: the given one, the stored one, or a new one written to the data dir. */
export function ensureToken(dataDir: string, kind: TokenKind, given: string | undefined): { token: string; path: string | undefined; generated: boolean } {
  if (given) return { token: given, path: undefined, generated: false };
  const path = tokenPath(dataDir, kind);
  const stored = readTokenFile(dataDir, kind);
  if (stored) return { token: stored, path, generated: false };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = newToken(kind === "executor" ? "aet" : "aat");
  writeFileSync(path, `${token}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(path, 0o600);
  return { token, path, generated: true };
}
