/**
 * Config values come from flags, then the environment, then defaults. Each process builds its
 * config once with `ConfigSource` and freezes it; only the CLI entry point hands `process.env` in.
 */
import { ValidationError } from "../protocol/index.ts";
import { parseDuration, parseSize } from "../protocol/index.ts";

export type Env = Readonly<Record<string, string | undefined>>;
export type Flags = Readonly<Record<string, unknown>>;

export class ConfigSource {
  private readonly flags: Flags;
  private readonly env: Env;

  constructor(flags: Flags, env: Env) {
    this.flags = flags;
    this.env = env;
  }

  /** The raw string for a setting: flag first, then env var, else undefined. */
  raw(flag: string, envName: string | undefined): { value: string; from: string } | undefined {
    const fromFlag = this.flags[flag];
    if (typeof fromFlag === "string" || typeof fromFlag === "number" || typeof fromFlag === "boolean") {
      if (fromFlag !== "") return { value: String(fromFlag), from: `--${kebab(flag)}` };
    }
    const fromEnv = envName ? this.env[envName] : undefined;
    if (fromEnv !== undefined && fromEnv !== "") return { value: fromEnv, from: envName as string };
    return undefined;
  }

  string(flag: string, envName: string | undefined): string | undefined;
  string(flag: string, envName: string | undefined, fallback: string): string;
  string(flag: string, envName: string | undefined, fallback?: string): string | undefined {
    return this.raw(flag, envName)?.value ?? fallback;
  }

  list(flag: string, envName: string | undefined, fallback: string[]): string[] {
    const found = this.raw(flag, envName);
    if (!found) return fallback;
    return found.value
      .split(",")
      .map((item) => item.trim())
      .filter(Boolean);
  }

  /** A switch: the flag given, or the env var set to 1/true (0/false/unset: off). */
  flag(flag: string, envName: string | undefined): boolean {
    const found = this.raw(flag, envName);
    if (!found) return false;
    const value = found.value.toLowerCase();
    if (value === "true" || value === "1") return true;
    if (value === "false" || value === "0") return false;
    throw new ValidationError(`${found.from}: "${found.value}" must be true or false`, { field: flag });
  }

  durationMs(flag: string, envName: string | undefined, fallback: string): number {
    const found = this.raw(flag, envName) ?? { value: fallback, from: "default" };
    const ms = parseDuration(found.value);
    if (ms === undefined || ms <= 0) throw new ValidationError(`${found.from}: "${found.value}" is not a duration (e.g. 5s, 10m)`, { field: flag });
    return ms;
  }

  sizeBytes(flag: string, envName: string | undefined, fallback: string): number {
    const found = this.raw(flag, envName) ?? { value: fallback, from: "default" };
    const bytes = parseSize(found.value);
    if (bytes === undefined || bytes <= 0) throw new ValidationError(`${found.from}: "${found.value}" is not a size (e.g. 64m, 1g)`, { field: flag });
    return bytes;
  }

  integer(flag: string, envName: string | undefined, fallback: number, min: number, max: number): number {
    const found = this.raw(flag, envName);
    if (!found) return fallback;
    const value = Number(found.value);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ValidationError(`${found.from}: "${found.value}" must be a whole number from ${min} to ${max}`, { field: flag });
    }
    return value;
  }

  oneOf<T extends string>(flag: string, envName: string | undefined, choices: readonly T[], fallback: T): T {
    const found = this.raw(flag, envName);
    if (!found) return fallback;
    if (!(choices as readonly string[]).includes(found.value)) {
      throw new ValidationError(`${found.from}: "${found.value}" must be one of ${choices.join(", ")}`, { field: flag });
    }
    return found.value as T;
  }
}

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/** Splits "host:port" (or "[::1]:port", or ":port") for listening. */
export function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new ValidationError(`--listen: "${value}" is not host:port`, { field: "listen" });
  return { host: match[1] ?? (match[2] || "127.0.0.1"), port };
}
