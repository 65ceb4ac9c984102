/** The conformance suite on the shared backend: a fresh database (cloned from a migrated template) per test. */
import { after, describe, it } from "node:test";
import { openPostgresStore } from "../../src/store/postgres/index.ts";
import type { Store } from "../../src/store/index.ts";
import { dropTemplate, freshDatabase, NO_POSTGRES } from "../helpers/postgres.ts";
import { storeConformance } from "./conformance.ts";

if (NO_POSTGRES) {
  describe("JobStore conformance: postgres", () => {
    it("needs a Postgres", (t) => t.skip(NO_POSTGRES));
  });
} else {
  const drops = new Map<Store, () => Promise<void>>();
  storeConformance("postgres", {
    async create() {
      const { url, drop } = await freshDatabase();
      const store = await openPostgresStore(url, { poolSize: 4 });
      await store.migrate();
      drops.set(store, drop);
      return store;
    },
    async destroy(store) {
      await store.close();
      await drops.get(store)?.();
    },
  });
  after(dropTemplate);
}
