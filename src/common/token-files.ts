/**
 * Tokens kept in a data dir (mode 0600): generated on a coordinator's first start when none is
 * given (src/coordinator/token-store.ts), and found here by the CLI and a local executor.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

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
