/**
 * Executors in SQLite: one row per executor name, written by every heartbeat and claim (inside
 * their transactions), listed with the jobs each is running. Only heartbeats carry the warm pool
 * (`warmPool` undefined: a claim, which leaves it as it was).
 */
import type { ExecutorIdentity, WarmPoolReport } from "../../protocol/index.ts";
import type { ExecutorRecord } from "../store.ts";
import type { SqliteDatabase } from "./database.ts";

interface ExecutorRow {
  name: string;
  hostname: string;
  version: string;
  protocol_version: number;
  runtime: string;
  isolation: string;
  queues: string;
  first_seen_at: number;
  last_heartbeat_at: number;
  warm_pool: string | null;
}

export function upsertExecutor(db: SqliteDatabase, executor: ExecutorIdentity, now: number, warmPool?: WarmPoolReport | null): void {
  db.run(
    `INSERT INTO executors (name, hostname, version, protocol_version, runtime, isolation, queues, first_seen_at, last_heartbeat_at, warm_pool)
     VALUES ($name, $hostname, $version, $protocol, $runtime, $isolation, $queues, $now, $now, $warmPool)
     ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
       protocol_version = excluded.protocol_version, runtime = excluded.runtime,
       isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = excluded.last_heartbeat_at,
       warm_pool = CASE WHEN $setPool AND excluded.last_heartbeat_at >= executors.last_heartbeat_at THEN excluded.warm_pool ELSE executors.warm_pool END`,
    {
      name: executor.executorName,
      hostname: executor.hostname,
      version: executor.version,
      protocol: executor.protocolVersion,
      runtime: executor.runtime,
      isolation: JSON.stringify(executor.isolation),
      queues: JSON.stringify(executor.queues),
      now,
      warmPool: warmPool ? JSON.stringify(warmPool) : null,
      setPool: warmPool === undefined ? 0 : 1,
    },
  );
}

export function listExecutors(db: SqliteDatabase): ExecutorRecord[] {
  const running = new Map<string, number[]>();
  for (const row of db.all<{ id: number; executor_name: string }>("SELECT id, executor_name FROM jobs WHERE state = 'processing' ORDER BY id")) {
    running.set(row.executor_name, [...(running.get(row.executor_name) ?? []), Number(row.id)]);
  }
  return db.all<ExecutorRow>("SELECT * FROM executors ORDER BY last_heartbeat_at DESC").map((row) => ({
    executorName: row.name,
    hostname: row.hostname,
    version: row.version,
    protocolVersion: Number(row.protocol_version),
    runtime: row.runtime,
    isolation: JSON.parse(row.isolation) as ExecutorRecord["isolation"],
    queues: JSON.parse(row.queues) as string[],
    firstSeenAt: Number(row.first_seen_at),
    lastHeartbeatAt: Number(row.last_heartbeat_at),
    runningJobIds: running.get(row.name) ?? [],
    warmPool: row.warm_pool ? (JSON.parse(row.warm_pool) as WarmPoolReport) : null,
  }));
}
