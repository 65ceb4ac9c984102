/**
 * Ending attempts in Postgres, grouped (groups.ts): ends arriving together, as when many executors
 * finish jobs at once, go as one statement. A lone end uses the single-attempt statement, the
 * cheaper of the two. Each end is fenced on its own (its job must still be processing that
 * attempt) and answered on its own: its job as the end left it, or LeaseLostError.
 */
import { LeaseLostError, type AttemptOutcome } from "../../protocol/index.ts";
import { toJob, type JobRow } from "../rows.ts";
import type { AttemptRef, JobRecord } from "../store.ts";
import type { PostgresDatabase } from "./database.ts";
import { StatementGroups, type Outcome } from "./groups.ts";
import type { Announcer } from "./index.ts";
import { FINISH_GROUP, finishStatement } from "./statements.ts";

interface End {
  ref: AttemptRef;
  outcome: AttemptOutcome;
  message: string | null;
  now: number;
}

const LANES = 2;

export class AttemptEnds {
  private readonly db: PostgresDatabase;
  private readonly announce: Announcer;
  private readonly groups: StatementGroups<End, JobRecord>;

  constructor(db: PostgresDatabase, announce: Announcer) {
    this.db = db;
    this.announce = announce;
    this.groups = new StatementGroups(LANES, (group) => (group.length === 1 ? this.endOne(group[0] as End) : this.endGroup(group)));
  }

  finish(ref: AttemptRef, outcome: AttemptOutcome, message: string | null, now: number): Promise<JobRecord> {
    return this.groups.submit({ ref, outcome, message, now });
  }

  private async endOne(end: End): Promise<Outcome<JobRecord>[]> {
    const statement = finishStatement(end.outcome);
    const rows = await this.db.query<JobRow>(
      statement.text,
      [end.ref.jobId, end.ref.attempt, end.outcome, end.message, end.now, this.announce.channel, this.announce.origin],
      statement.name,
    );
    return [this.answer(rows[0])];
  }

  private async endGroup(group: End[]): Promise<Outcome<JobRecord>[]> {
    // A job's attempt ends once: a second end of it in the same group (a retried request) finds
    // it ended, as it would have had it come just after.
    const first = new Map<number, End>();
    for (const end of group) if (!first.has(end.ref.jobId)) first.set(end.ref.jobId, end);
    const ends = [...first.values()];
    const rows = await this.db.query<JobRow>(
      FINISH_GROUP.text,
      [
        ends.map((end) => end.ref.jobId),
        ends.map((end) => end.ref.attempt),
        ends.map((end) => end.outcome),
        ends.map((end) => end.message),
        ends.map((end) => end.now),
        this.announce.channel,
        this.announce.origin,
      ],
      FINISH_GROUP.name,
    );
    const byJob = new Map(rows.map((row) => [Number(row.id), row]));
    return group.map((end) => this.answer(first.get(end.ref.jobId) === end ? byJob.get(end.ref.jobId) : undefined));
  }

  private answer(row: JobRow | undefined): Outcome<JobRecord> {
    if (!row) return { error: new LeaseLostError() };
    const job = toJob(row);
    this.announce.committed(job.state === "queued" ? [{ kind: "job", jobId: job.id }, { kind: "queued", queue: job.queue, isolation: job.isolation, network: job.network }] : [{ kind: "job", jobId: job.id }]);
    return { value: job };
  }
}
