/**
 * Test databases on the Postgres that scripts/setup.d/30-postgres.sh started (or the one given in
 * AIRLOCK_TEST_DATABASE_URL): a template database migrated once per process, cloned per test.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { PostgresDatabase } from "../../src/store/postgres/database.ts";

export const ADMIN_URL = process.env.AIRLOCK_TEST_DATABASE_URL;
export const NO_POSTGRES = ADMIN_URL ? undefined : "AIRLOCK_TEST_DATABASE_URL is not set (scripts/test.sh starts a throwaway Postgres and sets it)";

function urlFor(database: string): string {
  const url = new URL(ADMIN_URL as string);
  url.pathname = `/${database}`;
  return url.toString();
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

let template: Promise<string> | undefined;

/** A migrated, empty template database, made once per test process. */
function migratedTemplate(): Promise<string> {
  template ??= (async () => {
    const name = `airlock_tpl_${process.pid}_${randomBytes(3).toString("hex")}`;
    await admin((client) => client.query(`CREATE DATABASE ${name}`));
    const db = new PostgresDatabase(urlFor(name), { poolSize: 1 });
    try {
      await db.migrate();
    } finally {
      await db.close();
    }
    return name;
  })();
  return template;
}

/** A fresh migrated database; returns its URL and a function that drops it. */
export async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const source = await migratedTemplate();
  const name = `airlock_t_${process.pid}_${randomBytes(4).toString("hex")}`;
  await admin((client) => client.query(`CREATE DATABASE ${name} TEMPLATE ${source}`));
  return {
    url: urlFor(name),
    drop: () => admin(async (client) => void (await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))),
  };
}

/** Drops the template database (call once, after all tests of the process). */
export async function dropTemplate(): Promise<void> {
  if (!template) return;
  const name = await template;
  await admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}
