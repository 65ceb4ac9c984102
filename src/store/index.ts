/** Opens the store a coordinator is configured with. */
import { createSqliteStore } from "./sqlite/index.ts";
import type { Store } from "./store.ts";

export type * from "./store.ts";

export interface StoreLocation {
  /** A postgres:// URL, or undefined for the embedded SQLite file. */
  databaseUrl: string | undefined;
  sqlitePath: string;
}

export async function openStore(location: StoreLocation): Promise<Store> {
  const store = createSqliteStore(location.sqlitePath);
  await store.migrate();
  return store;
}
