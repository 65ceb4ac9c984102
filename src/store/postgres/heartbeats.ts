/**
 * Heartbeats to Postgres, grouped (groups.ts): heartbeats arriving together go as one statement.
 * Per group, executors whose identity is unchanged get only their heartbeat time written (a HOT
 * update of one column), others are upserted; leases are extended on the job rows each executor
 * still holds (a HOT update: no index covers the lease). The warm pool a heartbeat reports is
 * written with the heartbeat time (no index covers it either).
 */
import type { ExecutorIdentity, WarmPoolReport } from "../../protocol/index.ts";
import type { PostgresDatabase } from "./database.ts";
import { StatementGroups } from "./groups.ts";

export interface HeartbeatReply {
  knownIds: number[];
  cancelIds: number[];
}

interface Heartbeat {
  executor: ExecutorIdentity;
  jobIds: number[];
  leaseMs: number;
  now: number;
  warmPool: WarmPoolReport | null;
}

const HEARTBEATS = `WITH beats AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::bigint[], $11::jsonb[], $12::integer[])
      AS b (name, hostname, version, runtime, isolation, queues, at, warm_pool, protocol_version)
  ), touched AS (
    UPDATE executors e SET last_heartbeat_at = greatest(e.last_heartbeat_at, b.at),
      warm_pool = CASE WHEN b.at >= e.last_heartbeat_at THEN b.warm_pool ELSE e.warm_pool END FROM beats b
    WHERE e.name = ANY ($1::text[]) AND e.name = b.name AND e.hostname = b.hostname AND e.version = b.version AND e.runtime = b.runtime
      AND e.protocol_version = b.protocol_version AND e.isolation = b.isolation AND e.queues = b.queues
    RETURNING e.name
  ), recorded AS (
    INSERT INTO executors (name, hostname, version, protocol_version, runtime, isolation, queues, first_seen_at, last_heartbeat_at, warm_pool)
    SELECT name, hostname, version, protocol_version, runtime, isolation, queues, at, at, warm_pool FROM beats WHERE name NOT IN (SELECT name FROM touched)
    ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
      protocol_version = excluded.protocol_version, runtime = excluded.runtime,
      isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = greatest(executors.last_heartbeat_at, excluded.last_heartbeat_at),
      warm_pool = CASE WHEN excluded.last_heartbeat_at >= executors.last_heartbeat_at THEN excluded.warm_pool ELSE executors.warm_pool END
  )
  UPDATE jobs j SET lease_expires_at = l.until
  FROM unnest($8::bigint[], $9::text[], $10::bigint[]) AS l (id, executor, until)
  WHERE j.id = l.id AND j.state = 'processing' AND j.executor_name = l.executor
  RETURNING j.id, j.executor_name, j.cancel_requested`;

const LANES = 4;

export class HeartbeatGroups {
  private readonly db: PostgresDatabase;
  private readonly groups: StatementGroups<Heartbeat, HeartbeatReply>;

  constructor(db: PostgresDatabase) {
    this.db = db;
    this.groups = new StatementGroups(LANES, async (group) => {
      const rows = await this.send(group);
      return group.map((beat) => ({ value: replyFor(beat, rows) }));
    });
  }

  heartbeat(executor: ExecutorIdentity, jobIds: number[], leaseMs: number, now: number, warmPool: WarmPoolReport | null): Promise<HeartbeatReply> {
    return this.groups.submit({ executor, jobIds, leaseMs, now, warmPool });
  }

  private async send(group: Heartbeat[]): Promise<{ id: number; executor_name: string; cancel_requested: boolean }[]> {
    // An executor twice in one group (a retried heartbeat) is recorded once, with its latest.
    const executors = new Map<string, Heartbeat>();
    for (const beat of group) {
      const seen = executors.get(beat.executor.executorName);
      if (!seen || seen.now <= beat.now) executors.set(beat.executor.executorName, beat);
    }
    const beats = [...executors.values()];
    // A job twice for one executor (a retried heartbeat) is extended once, to the later of the two.
    const leases = new Map<string, { id: number; executor: string; until: number }>();
    for (const beat of group) {
      for (const id of beat.jobIds) {
        const lease = { id, executor: beat.executor.executorName, until: beat.now + beat.leaseMs };
        const key = `${id}/${lease.executor}`;
        if ((leases.get(key)?.until ?? -Infinity) < lease.until) leases.set(key, lease);
      }
    }
    const params = [
      beats.map((beat) => beat.executor.executorName),
      beats.map((beat) => beat.executor.hostname),
      beats.map((beat) => beat.executor.version),
      beats.map((beat) => beat.executor.runtime),
      beats.map((beat) => JSON.stringify(beat.executor.isolation)),
      beats.map((beat) => JSON.stringify(beat.executor.queues)),
      beats.map((beat) => beat.now),
      [...leases.values()].map((lease) => lease.id),
      [...leases.values()].map((lease) => lease.executor),
      [...leases.values()].map((lease) => lease.until),
      beats.map((beat) => (beat.warmPool ? JSON.stringify(beat.warmPool) : null)),
      beats.map((beat) => beat.executor.protocolVersion),
    ];
    return this.db.query(HEARTBEATS, params, "airlock_heartbeats");
  }
}

/** What one heartbeat learns from its group's rows: which of its jobs it still holds, which to cancel. */
function replyFor(beat: Heartbeat, rows: { id: number; executor_name: string; cancel_requested: boolean }[]): HeartbeatReply {
  const asked = new Set(beat.jobIds);
  const held = rows.filter((row) => row.executor_name === beat.executor.executorName && asked.has(row.id));
  const ids = (list: typeof held) => [...new Set(list.map((row) => row.id))].sort((a, b) => a - b);
  return { knownIds: ids(held), cancelIds: ids(held.filter((row) => row.cancel_requested)) };
}
