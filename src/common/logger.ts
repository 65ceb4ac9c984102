/**
 * Structured logging: a small Logger interface with child scopes (executor, job, step),
 * backed by pino. Library code logs through this; only the CLI prints to stdout.
 */
import { Writable } from "node:stream";
import { pino, type Logger as PinoLogger } from "pino";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type LogMeta = Record<string, unknown>;

export interface Logger {
  debug(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  error(message: string, meta?: LogMeta): void;
  /** A logger whose lines all carry these fields (e.g. `{ jobId }`). */
  child(bindings: LogMeta): Logger;
}

export interface LoggerOptions {
  level: LogLevel;
  /** "text" for people at a terminal, "json" for machines. */
  format: "text" | "json";
  /** Where lines go; standard error by default. */
  destination?: NodeJS.WritableStream;
}

class PinoAdapter implements Logger {
  private readonly inner: PinoLogger;

  constructor(inner: PinoLogger) {
    this.inner = inner;
  }

  debug(message: string, meta?: LogMeta): void {
    this.inner.debug(meta ?? {}, message);
  }
  info(message: string, meta?: LogMeta): void {
    this.inner.info(meta ?? {}, message);
  }
  warn(message: string, meta?: LogMeta): void {
    this.inner.warn(meta ?? {}, message);
  }
  error(message: string, meta?: LogMeta): void {
    this.inner.error(meta ?? {}, message);
  }
  child(bindings: LogMeta): Logger {
    return new PinoAdapter(this.inner.child(bindings));
  }
}

const LEVEL_NAMES: Record<number, string> = { 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR" };
const HIDDEN_KEYS = new Set(["level", "time", "msg", "pid", "hostname", "scope"]);

/** Renders pino's JSON lines as "12:00:01.234 INFO  scope: message key=value". */
function textStream(destination: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        try {
          const record = JSON.parse(line) as Record<string, unknown>;
          const time = new Date(Number(record.time)).toISOString().slice(11, 23);
          const level = (LEVEL_NAMES[Number(record.level)] ?? "LOG").padEnd(5);
          const scope = typeof record.scope === "string" ? `${record.scope}: ` : "";
          const extras = Object.entries(record)
            .filter(([key]) => !HIDDEN_KEYS.has(key))
            .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
            .join(" ");
          destination.write(`${time} ${level} ${scope}${typeof record.msg === "string" ? record.msg : ""}${extras ? `  ${extras}` : ""}\n`);
        } catch {
          destination.write(`${line}\n`);
        }
      }
      callback();
    },
  });
}

export function createLogger(options: LoggerOptions): Logger {
  const destination = options.destination ?? process.stderr;
  const stream = options.format === "text" ? textStream(destination) : destination;
  const inner = pino({ level: options.level, base: undefined }, stream as pino.DestinationStream);
  return new PinoAdapter(inner);
}

/** A logger that drops everything (tests and library defaults). */
export const silentLogger: Logger = createLogger({ level: "silent", format: "json" });
