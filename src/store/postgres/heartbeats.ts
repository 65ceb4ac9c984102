/**
 * Heartbeats to Postgres, grouped: up to LANES statements are in flight at once; heartbeats that
 * arrive while every lane is busy wait, and go together as one statement (one round trip and one
 * commit for many executors) when a lane frees. Nothing waits on a timer, so a heartbeat arriving
 * with a lane free goes out at once; under load the groups grow instead of the queue of pooled
 * connections, and heartbeats never hold more than LANES connections. (One lane alone would make
 * every heartbeat wait behind one slow statement: on a busy machine that tail is far worse.)
 *
 * States: `inFlight` lanes busy (0..LANES), `waiting` heartbeats not yet sent. A heartbeat joins
 * `waiting` and, with a lane free, starts a group of everything waiting; a finished group starts
 * the next one if anything waits. Both are only touched on the event loop: no locking is needed.
 *
 * In the database, per group: executors whose identity is unchanged get only their heartbeat
 * time written (a HOT update of one column), others are upserted; leases are extended on the job
 * rows the executor still holds (a HOT update: no index covers the lease). A group touching job
 * rows in one order can deadlock with another coordinator's group touching them in another (the
 * same executor heartbeating through two coordinators at once); the statement did nothing then,
 * and is sent again.
 */
import type { ExecutorIdentity } from "../../protocol/index.ts";
import type { PostgresDatabase } from "./database.ts";

export interface HeartbeatReply {
  knownIds: number[];
  cancelIds: number[];
}

interface Heartbeat {
  executor: ExecutorIdentity;
  jobIds: number[];
  leaseMs: number;
  now: number;
  resolve: (reply: HeartbeatReply) => void;
  reject: (error: unknown) => void;
}

const HEARTBEATS = `WITH beats AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::bigint[])
      AS b (name, hostname, version, runtime, isolation, queues, at)
  ), touched AS (
    UPDATE executors e SET last_heartbeat_at = greatest(e.last_heartbeat_at, b.at) FROM beats b
    WHERE e.name = b.name AND e.hostname = b.hostname AND e.version = b.version AND e.runtime = b.runtime
      AND e.isolation = b.isolation AND e.queues = b.queues
    RETURNING e.name
  ), recorded AS (
    INSERT INTO executors (name, hostname, version, runtime, isolation, queues, first_seen_at, last_heartbeat_at)
    SELECT name, hostname, version, runtime, isolation, queues, at, at FROM beats WHERE name NOT IN (SELECT name FROM touched)
    ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, runtime = excluded.runtime,
      isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = greatest(executors.last_heartbeat_at, excluded.last_heartbeat_at)
  )
  UPDATE jobs j SET lease_expires_at = l.until
  FROM unnest($8::bigint[], $9::text[], $10::bigint[]) AS l (id, executor, until)
  WHERE j.id = l.id AND j.state = 'processing' AND j.executor_name = l.executor
  RETURNING j.id, j.executor_name, j.cancel_requested`;

const DEADLOCK = "40P01";
const LANES = 4;

export class HeartbeatGroups {
  private readonly db: PostgresDatabase;
  private waiting: Heartbeat[] = [];
  private inFlight = 0;

  constructor(db: PostgresDatabase) {
    this.db = db;
  }

  heartbeat(executor: ExecutorIdentity, jobIds: number[], leaseMs: number, now: number): Promise<HeartbeatReply> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ executor, jobIds, leaseMs, now, resolve, reject });
      if (this.inFlight < LANES) void this.sendGroup();
    });
  }

  private async sendGroup(): Promise<void> {
    const group = this.waiting;
    this.waiting = [];
    this.inFlight += 1;
    try {
      const rows = await this.send(group);
      for (const beat of group) beat.resolve(replyFor(beat, rows));
    } catch (error) {
      for (const beat of group) beat.reject(error);
    } finally {
      this.inFlight -= 1;
      if (this.waiting.length > 0 && this.inFlight < LANES) void this.sendGroup();
    }
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
    ];
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.db.query(HEARTBEATS, params, "airlock_heartbeats");
      } catch (error) {
        if ((error as { code?: string }).code !== DEADLOCK || attempt >= 3) throw error;
      }
    }
  }
}

/** What one heartbeat learns from its group's rows: which of its jobs it still holds, which to cancel. */
function replyFor(beat: Heartbeat, rows: { id: number; executor_name: string; cancel_requested: boolean }[]): HeartbeatReply {
  const asked = new Set(beat.jobIds);
  const held = rows.filter((row) => row.executor_name === beat.executor.executorName && asked.has(row.id));
  const ids = (list: typeof held) => [...new Set(list.map((row) => row.id))].sort((a, b) => a - b);
  return { knownIds: ids(held), cancelIds: ids(held.filter((row) => row.cancel_requested)) };
}
