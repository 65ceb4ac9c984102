/**
 * Tokens kept in files (mode 0600): generated on a coordinator's first start when none is given
 * (src/coordinator/token-store.ts), or written by an operator. A file may hold several tokens,
 * one per line (`#` starts a comment): a coordinator accepts each of them, which is how a token
 * is rotated without downtime (docs/deploy.md). Whoever presents a token uses the first.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ValidationError } from "../protocol/index.ts";

export const TOKEN_FILES = { executor: "executor-token", api: "api-token" } as const;
export type TokenKind = keyof typeof TOKEN_FILES;

export function tokenPath(dataDir: string, kind: TokenKind): string {
  return join(dataDir, TOKEN_FILES[kind]);
}

/** The tokens in a file's text: one per line, blank lines and `#` comments skipped. */
export function parseTokenList(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter(Boolean);
}

/** The first token of the data dir's file for `kind`, or undefined when there is none. */
export function readTokenFile(dataDir: string, kind: TokenKind): string | undefined {
  const path = tokenPath(dataDir, kind);
  if (!existsSync(path)) return undefined;
  return parseTokenList(readFileSync(path, "utf8"))[0];
}

/** Every token in a file an operator named (`--token-file` and the like); a missing or empty file is an error naming it. */
export function readTokenList(path: string, flag: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ValidationError(`${flag}: cannot read "${path}": ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { field: flag });
  }
  const tokens = parseTokenList(text);
  if (tokens.length === 0) throw new ValidationError(`${flag}: "${path}" holds no token (one per line)`, { field: flag });
  for (const token of tokens) {
    if (/\s/.test(token)) throw new ValidationError(`${flag}: "${path}" holds a line with a space in it; put one token per line`, { field: flag });
  }
  return tokens;
}
