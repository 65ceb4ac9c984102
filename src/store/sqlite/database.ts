/**
 * One SQLite connection (node:sqlite) in WAL mode, with transactions and migrations.
 *
 * Locking: node:sqlite is synchronous, so within one process a transaction can never interleave
 * with another. Across processes sharing the file, `BEGIN IMMEDIATE` takes the write lock up front
 * (waiting up to busy_timeout), so a read-then-write inside `write()` is never raced.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { SQLITE_MIGRATIONS } from "./migrations.ts";

/** Distinct SQL texts kept prepared; well above the store's own count. */
const MAX_STATEMENTS = 500;

export type Params = Record<string, SQLInputValue>;
export type Row = Record<string, SQLInputValue>;

export class SqliteDatabase {
  readonly db: DatabaseSync;
  private depth = 0;

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path);
    this.db.exec("PRAGMA journal_mode = WAL");
    this.db.exec("PRAGMA synchronous = NORMAL");
    this.db.exec("PRAGMA busy_timeout = 5000");
    this.db.exec("PRAGMA foreign_keys = ON");
  }

  /**
   * Prepared statements by SQL text: preparing (parse and plan) cost more than running the
   * short statements of the queue's hot path. The SQL texts are constants of the store modules,
   * so the map stays small; it is emptied if it ever grows past a bound.
   */
  private readonly statements = new Map<string, StatementSync>();

  private prepared(sql: string): StatementSync {
    let statement = this.statements.get(sql);
    if (!statement) {
      if (this.statements.size >= MAX_STATEMENTS) this.statements.clear();
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  get<T = Row>(sql: string, params: Params = {}): T | undefined {
    return this.prepared(sql).get(params) as T | undefined;
  }

  all<T = Row>(sql: string, params: Params = {}): T[] {
    return this.prepared(sql).all(params) as T[];
  }

  run(sql: string, params: Params = {}): { changes: number; lastInsertRowid: number } {
    const result = this.prepared(sql).run(params);
    return { changes: Number(result.changes), lastInsertRowid: Number(result.lastInsertRowid) };
  }

  /** Runs `fn` in a write transaction; nested calls join the outer one. */
  write<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.prepared("BEGIN IMMEDIATE").run();
    this.depth += 1;
    try {
      const result = fn();
      this.prepared("COMMIT").run();
      return result;
    } catch (error) {
      // Some errors (SQLITE_FULL, SQLITE_IOERR...) roll the transaction back by themselves; a
      // ROLLBACK then would fail and hide the error that matters.
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      throw error;
    } finally {
      this.depth -= 1;
    }
  }

  migrate(): void {
    this.db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    this.write(() => {
      const row = this.get<{ version: number | null }>("SELECT max(version) AS version FROM schema_migrations");
      const current = row?.version ?? 0;
      SQLITE_MIGRATIONS.forEach((sql, index) => {
        const version = index + 1;
        if (version <= current) return;
        this.db.exec(sql);
        this.run("INSERT INTO schema_migrations (version, applied_at) VALUES ($version, $now)", { version, now: Date.now() });
      });
    });
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
