/** Opens the store a coordinator is configured with: Postgres for a postgres:// URL, else SQLite. */
import type { Logger } from "../common/logger.ts";
import { openPostgresStore } from "./postgres/index.ts";
import { createSqliteStore } from "./sqlite/index.ts";
import type { Store } from "./store.ts";

export type * from "./store.ts";

export interface StoreLocation {
  /** A postgres:// URL, or undefined for the embedded SQLite file. */
  databaseUrl: string | undefined;
  sqlitePath: string;
  /** Where a backend reports trouble it recovers from by itself (a lost connection). */
  logger?: Logger | undefined;
}

export async function openStore(location: StoreLocation): Promise<Store> {
  const store = location.databaseUrl ? await openPostgresStore(location.databaseUrl, location.logger ? { logger: location.logger } : {}) : createSqliteStore(location.sqlitePath);
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}
