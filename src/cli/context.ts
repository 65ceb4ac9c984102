/** What CLI commands share: the environment they were started with, printing, and the API client. */
import { resolve } from "node:path";
import { ConfigSource, type Env, type Flags } from "../common/config-source.ts";
import { readTokenFile } from "../common/token-files.ts";
import { ValidationError } from "../protocol/index.ts";
import { ApiClient } from "./api-client.ts";

export interface CliIO {
  env: Env;
  /** The CLI's own entry script, for commands that start more airlock processes (the demo). */
  entry: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface ClientFlags {
  url?: string;
  token?: string;
  data?: string;
  ca?: string;
}

/** Where the user API is and the token for it: `--url`/`AIRLOCK_URL`, `--token`/`AIRLOCK_TOKEN` (or the data dir's token), `--ca`. */
export function clientSettings(flags: ClientFlags, io: CliIO): { url: string; token: string; caPath: string | undefined } {
  const source = new ConfigSource(flags as Flags, io.env);
  const url = source.string("url", "AIRLOCK_URL", "http://127.0.0.1:7780");
  const dataDir = resolve(source.string("data", "AIRLOCK_DATA", ".airlock"));
  const token = source.string("token", "AIRLOCK_TOKEN") ?? readTokenFile(dataDir, "api");
  if (!token) throw new ValidationError(`no API token: pass --token or AIRLOCK_TOKEN (a local coordinator keeps one in ${dataDir}/api-token)`);
  return { url, token, caPath: source.string("ca", "AIRLOCK_CA") };
}

/** The user API client for the settings above. */
export function apiClient(flags: ClientFlags, io: CliIO): ApiClient {
  return new ApiClient(clientSettings(flags, io));
}

export function println(stream: NodeJS.WritableStream, text = ""): void {
  stream.write(`${text}\n`);
}

/** Formats rows as aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0))).join("  ")).join("\n");
}
