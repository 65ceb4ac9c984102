/**
 * Claims in Postgres. A claim is one statement (statements.ts). Claims of one queue arriving
 * together, as when many idle executors poll at once, share one (groups.ts): it locks up to as
 * many of the queue's oldest claimable jobs as there are claims, and hands them out in order of
 * arrival, as that many claims one after the other would. Claims that must record their executor
 * and claims over several queues in a given order go alone.
 *
 * An executor is recorded (identity, last contact) by a claim at most once a second: this process
 * remembers when it last recorded each one, and the recording statement itself skips the write
 * when another coordinator did it within the second.
 */
import { isolationRank, networkRank, type ExecutorIdentity } from "../../protocol/index.ts";
import { toJob, type JobRow } from "../rows.ts";
import type { ClaimRequest, JobRecord } from "../store.ts";
import type { PostgresDatabase } from "./database.ts";
import { StatementGroups, type Outcome } from "./groups.ts";
import type { Announcer } from "./index.ts";
import { CLAIM_GROUP, claimStatement } from "./statements.ts";

interface Claim {
  executor: string;
  tokenHash: string;
  leaseMs: number;
  now: number;
}

/** How often a claiming executor's record is refreshed; heartbeats always refresh it. */
const RECORD_EVERY_MS = 1000;
const LANES = 2;

/** What an executor's record says besides its name and last contact. */
export function identityOf(executor: ExecutorIdentity): string {
  return JSON.stringify([executor.hostname, executor.version, executor.protocolVersion, executor.runtime, executor.isolation, executor.network, executor.queues]);
}

export class Claims {
  private readonly db: PostgresDatabase;
  private readonly announce: Announcer;
  /** When this process last recorded each executor, and as what. */
  private readonly recorded = new Map<string, { identity: string; at: number }>();
  /** Grouped claims, per queue and isolation rank. */
  private readonly groups = new Map<string, StatementGroups<Claim, JobRecord | undefined>>();

  constructor(db: PostgresDatabase, announce: Announcer) {
    this.db = db;
    this.announce = announce;
  }

  async claim(request: ClaimRequest, now: number): Promise<JobRecord | undefined> {
    const { executor } = request;
    const maxRank = Math.max(...executor.isolation.map(isolationRank));
    const maxNetworkRank = networkRank(executor.network);
    const identity = identityOf(executor);
    const last = this.recorded.get(executor.executorName);
    const record = last === undefined || last.identity !== identity || now - last.at >= RECORD_EVERY_MS || now < last.at;
    const queue = request.preference?.length === 1 ? request.preference[0] : undefined;
    if (!record && queue !== undefined) {
      return this.groupFor(queue, maxRank, maxNetworkRank).submit({ executor: executor.executorName, tokenHash: request.tokenHash, leaseMs: request.leaseMs, now });
    }
    const statement = claimStatement(request.preference !== undefined, record);
    const params: unknown[] = [
      request.preference ? [...request.preference] : executor.queues,
      maxRank,
      executor.executorName,
      request.tokenHash,
      now,
      request.leaseMs,
      maxNetworkRank,
    ];
    if (record) params.push(executor.hostname, executor.version, executor.runtime, JSON.stringify(executor.isolation), JSON.stringify(executor.queues), executor.protocolVersion);
    const rows = await this.db.query<JobRow>(statement.text, params, statement.name);
    if (record) this.remember(executor.executorName, identity, now);
    return this.answer(rows[0]);
  }

  /** Notes that an executor was recorded (as `identity`) at `now`; forgets entries too old to matter. */
  remember(name: string, identity: string, now: number): void {
    if (this.recorded.size >= 10_000) {
      for (const [known, entry] of this.recorded) if (now - entry.at >= RECORD_EVERY_MS) this.recorded.delete(known);
    }
    this.recorded.set(name, { identity, at: now });
  }

  private groupFor(queue: string, maxRank: number, maxNetworkRank: number): StatementGroups<Claim, JobRecord | undefined> {
    const key = `${maxRank}/${maxNetworkRank}/${queue}`;
    let group = this.groups.get(key);
    if (!group) {
      group = new StatementGroups(LANES, (claims) => this.claimGroup(queue, maxRank, maxNetworkRank, claims));
      this.groups.set(key, group);
    }
    return group;
  }

  private async claimGroup(queue: string, maxRank: number, maxNetworkRank: number, claims: Claim[]): Promise<Outcome<JobRecord | undefined>[]> {
    const only = claims.length === 1 ? claims[0] : undefined;
    if (only) {
      const statement = claimStatement(true, false);
      const rows = await this.db.query<JobRow>(statement.text, [[queue], maxRank, only.executor, only.tokenHash, only.now, only.leaseMs, maxNetworkRank], statement.name);
      return [{ value: this.answer(rows[0]) }];
    }
    const rows = await this.db.query<JobRow & { request: number }>(
      CLAIM_GROUP.text,
      [
        queue,
        maxRank,
        claims.map((claim) => claim.executor),
        claims.map((claim) => claim.tokenHash),
        claims.map((claim) => claim.now),
        claims.map((claim) => claim.leaseMs),
        claims.length,
        maxNetworkRank,
      ],
      CLAIM_GROUP.name,
    );
    const byRequest = new Map(rows.map((row) => [Number(row.request), row]));
    return claims.map((_claim, index) => ({ value: this.answer(byRequest.get(index + 1)) }));
  }

  private answer(row: JobRow | undefined): JobRecord | undefined {
    if (!row) return undefined;
    const job = toJob(row);
    this.announce.committed([{ kind: "job", jobId: job.id }]);
    return job;
  }
}
