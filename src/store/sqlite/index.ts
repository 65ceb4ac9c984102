/** The embedded default backend: one SQLite file (WAL) in the coordinator's data dir. */
import { EventEmitter } from "node:events";
import type { Store, StoreChange } from "../store.ts";
import { SqliteBatchStore } from "./batch-store.ts";
import { SqliteIndexStore } from "./index-store.ts";
import { SqliteDatabase } from "./database.ts";
import { SqliteJobStore } from "./job-store.ts";
import { SqliteOutputStore } from "./output-store.ts";
import { SqliteRepositoryStore } from "./repository-store.ts";
import { SqliteSecretStore } from "./secret-store.ts";

export function createSqliteStore(path: string): Store {
  const db = new SqliteDatabase(path);
  const changes = new EventEmitter();
  changes.setMaxListeners(0);
  const emit = (change: StoreChange): void => {
    changes.emit("change", change);
  };
  const jobs = new SqliteJobStore(db, emit);
  return {
    jobs,
    outputs: new SqliteOutputStore(db, jobs, emit),
    secrets: new SqliteSecretStore(db),
    repositories: new SqliteRepositoryStore(db),
    batches: new SqliteBatchStore(db),
    indexes: new SqliteIndexStore(db),
    capabilities: { crossProcessNotifications: false },
    onChange(listener) {
      changes.on("change", listener);
      return () => changes.off("change", listener);
    },
    async migrate() {
      db.migrate();
    },
    async close() {
      changes.removeAllListeners();
      db.close();
    },
  };
}
