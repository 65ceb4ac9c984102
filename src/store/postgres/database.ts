/**
 * The Postgres connection pool, transactions and migrations.
 *
 * Locking: statements run in READ COMMITTED. Every read-then-write goes through `tx()` and locks
 * the rows it decides on (`FOR UPDATE`, `FOR SHARE`, or `SKIP LOCKED` where a row someone else is
 * handling may simply be passed over), so concurrent coordinators never act on a stale read.
 * Migrations hold a transaction-scoped advisory lock, so coordinators starting together apply
 * each migration once.
 */
import pg from "pg";
import { UnavailableError, ValidationError } from "../../protocol/index.ts";
import { POSTGRES_MIGRATIONS } from "./migrations.ts";

/** int8 columns (ids, epoch-ms times, sizes) as numbers: all fit in 2^53. Per pool, not global. */
const types = {
  getTypeParser(oid: number, format?: "text" | "binary"): (value: string) => unknown {
    if (oid === 20) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format) as (value: string) => unknown;
  },
};

const MIGRATION_LOCK = 0x6169726c; // "airl"
/** Deadlocks and serialization failures are retried: the transaction did nothing. */
const RETRYABLE = new Set(["40P01", "40001"]);
/**
 * Connecting failed (refused, or the server is still starting after a restart): nothing was sent,
 * so trying again is safe for any statement. Retried for up to NOT_SENT_RETRY_MS, which rides out
 * a Postgres restart; a statement whose connection broke after it was sent is never retried (it
 * may have committed), its caller gets UnavailableError.
 */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOENT", "57P03"]);
const NOT_SENT_RETRY_MS = 5_000;

export type Queryable = Pick<pg.PoolClient, "query">;

export function checkDatabaseUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError(`--database: "${url.replace(/:[^:@/]*@/, ":***@")}" is not a URL (postgres://user:password@host:port/database)`, { field: "database" });
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new ValidationError(`--database: only postgres:// (or postgresql://) URLs are supported, not ${parsed.protocol}//`, { field: "database" });
  }
}

export class PostgresDatabase {
  readonly pool: pg.Pool;
  readonly config: pg.PoolConfig;

  constructor(url: string, options: { poolSize?: number; applicationName?: string } = {}) {
    checkDatabaseUrl(url);
    this.config = { connectionString: url, types, application_name: options.applicationName ?? "airlock", keepAlive: true };
    this.pool = new pg.Pool({ ...this.config, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 });
    // A pooled connection that dies while idle is dropped by the pool; without a listener the
    // error would crash the process.
    this.pool.on("error", () => undefined);
  }

  /** One statement on any pooled connection. A `name` makes it a prepared statement (parsed and planned once per connection): for the hot paths. */
  async query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = [], name?: string): Promise<T[]> {
    const result = await whileNotSent(() => this.pool.query<T>(name ? { name, text: sql, values: params } : { text: sql, values: params })).catch(unavailable);
    return result.rows;
  }

  /** Runs `fn` in one transaction on one connection; retried from the start on a deadlock. */
  async tx<T>(fn: (client: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      const client = await whileNotSent(() => this.pool.connect()).catch(unavailable);
      let broken = false;
      // The pool listens for errors only on idle clients: a connection that dies while checked
      // out (between this transaction's statements, or as the server crashes) would emit an
      // 'error' no one handles, and that kills the process.
      const onError = (): void => {
        broken = true;
      };
      client.on("error", onError);
      try {
        await client.query("BEGIN");
        const result = await fn(client);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        const code = (error as { code?: string }).code ?? "";
        if (RETRYABLE.has(code) && attempt < 5) continue;
        throw unavailableOr(error);
      } finally {
        client.removeListener("error", onError);
        client.release(broken);
      }
    }
  }

  async migrate(): Promise<void> {
    await this.tx(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)");
      const { rows } = await client.query<{ version: number | null }>("SELECT max(version) AS version FROM schema_migrations");
      const current = rows[0]?.version ?? 0;
      for (const [index, sql] of POSTGRES_MIGRATIONS.entries()) {
        const version = index + 1;
        if (version <= current) continue;
        await client.query(sql);
        await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [version, Date.now()]);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function whileNotSent<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + NOT_SENT_RETRY_MS;
  for (let delay = 100; ; delay = Math.min(1000, delay * 2)) {
    try {
      return await fn();
    } catch (error) {
      if (!NOT_SENT.has((error as { code?: string }).code ?? "") || Date.now() + delay > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** Connection-level failures become UnavailableError (503); anything else passes through. */
function unavailableOr(error: unknown): unknown {
  const code = (error as { code?: string }).code ?? "";
  if (/^(ECONN|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|57P0|08)/.test(code) || (error instanceof Error && /Connection terminated|not queryable|timeout exceeded when trying to connect/.test(error.message))) {
    return new UnavailableError(`database unavailable: ${(error as Error).message}`, { cause: error });
  }
  return error;
}

function unavailable(error: unknown): never {
  throw unavailableOr(error);
}
