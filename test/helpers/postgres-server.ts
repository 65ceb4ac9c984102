/**
 * A PostgreSQL server of a test's own (initdb into a temp dir, a free loopback port), for tests
 * that stop and restart the server: the shared one of scripts/setup.d/30-postgres.sh serves
 * other test files at the same time. As root, the server runs as the `postgres` user.
 */
import { spawnSync } from "node:child_process";
import { chownSync, existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { run, runChecked } from "../../src/common/exec.ts";
import { freePort } from "../../src/cli/local-cluster.ts";

/** The directory holding initdb and pg_ctl (PATH first, then Debian's versioned layout), or undefined. */
export function postgresBinDir(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) if (dir && existsSync(join(dir, "pg_ctl")) && existsSync(join(dir, "initdb"))) return dir;
  const versions = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const dir = `/usr/lib/postgresql/${version}/bin`;
    if (existsSync(join(dir, "pg_ctl")) && existsSync(join(dir, "initdb"))) return dir;
  }
  return undefined;
}

const isRoot = userInfo().uid === 0;

function postgresUser(): { uid: number; gid: number } | undefined {
  const result = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  return result.status === 0 && gid.status === 0 ? { uid: Number(result.stdout.trim()), gid: Number(gid.stdout.trim()) } : undefined;
}

/** Why no private Postgres can run here, or undefined. */
export function privatePostgresUnavailable(): string | undefined {
  if (!postgresBinDir()) return "no PostgreSQL server binaries (initdb, pg_ctl); run scripts/setup.sh test";
  if (isRoot && !postgresUser()) return "running as root and there is no postgres user to run the server as (scripts/setup.d/30-postgres.sh makes one)";
  return undefined;
}

export interface PostgresServer {
  /** Admin URL (database `postgres`). */
  url: string;
  /** `pg_ctl stop -m <mode>`. */
  stop(mode: "immediate" | "fast"): Promise<void>;
  start(): Promise<void>;
  /** Stops the server (fast) and removes its files. */
  destroy(): Promise<void>;
}

export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = postgresBinDir() as string;
  const dir = await mkdtemp(join(tmpdir(), "airlock-own-pg-"));
  const owner = isRoot ? postgresUser() : undefined;
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const as = (command: string, args: string[]): [string, string[]] => (owner ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", command, ...args]] : [command, args]);
  const data = join(dir, "data");
  const port = await freePort();
  const env = { PATH: process.env.PATH };
  await runChecked(...as(join(bin, "initdb"), [`--pgdata=${data}`, "--username=postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"]), { env });
  const options = `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${dir} -c fsync=off -c max_connections=100`;
  const pgCtl = (args: string[]) => runChecked(...as(join(bin, "pg_ctl"), [`--pgdata=${data}`, ...args]), { env });
  const start = async () => {
    await pgCtl([`--log=${join(dir, "postgres.log")}`, "--wait", "--timeout=60", "-o", options, "start"]);
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async (mode) => {
      await pgCtl(["--mode", mode, "--wait", "--timeout=30", "stop"]);
    },
    start,
    destroy: async () => {
      await run(...as(join(bin, "pg_ctl"), [`--pgdata=${data}`, "--mode", "fast", "--wait", "--timeout=30", "stop"]), { env }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
