/** The conformance suite on the embedded backend: a fresh SQLite file per test. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createSqliteStore } from "../../src/store/sqlite/index.ts";
import type { Store } from "../../src/store/index.ts";
import { storeConformance } from "./conformance.ts";

const paths = new Map<Store, string>();

storeConformance("sqlite", {
  async create() {
    const dir = await mkdtemp(join(tmpdir(), "airlock-sqlite-"));
    const store = createSqliteStore(join(dir, "airlock.db"));
    await store.migrate();
    paths.set(store, join(dir, "airlock.db"));
    return store;
  },
  async destroy(store) {
    await store.close();
    const path = paths.get(store);
    if (path) await rm(dirname(path), { recursive: true, force: true });
  },
});
