/**
 * Calls grouped into shared statements: up to `lanes` statements are in flight at once; calls
 * that arrive while every lane is busy wait, and go together, as one statement (one round trip
 * and one commit for all of them), when a lane frees. Nothing waits on a timer: a call arriving
 * with a lane free goes out at once, alone, so grouping costs no latency when the store is idle;
 * under load the groups grow instead of the queue for pooled connections, and one kind of call
 * never holds more than `lanes` connections. (A single lane would make every call wait behind
 * one slow statement: on a busy machine that tail is far worse.)
 *
 * States: `inFlight` lanes busy (0..lanes), `waiting` calls not yet sent. A call joins `waiting`
 * and, with a lane free, starts a group of everything waiting; a finished group starts the next
 * one if anything waits. Both are only touched on the event loop: no locking is needed here.
 *
 * A statement updating several job rows can deadlock with another coordinator's doing the same
 * in another order; Postgres then undoes it entirely, and the group is sent again.
 */
import { AirlockError } from "../../protocol/index.ts";

/** What a group's statement answers for one of its calls: a result, or the error that call gets. */
export type Outcome<R> = { value: R } | { error: Error };

interface Call<T, R> {
  item: T;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

const DEADLOCK = "40P01";
const TRIES = 3;

export class StatementGroups<T, R> {
  private readonly lanes: number;
  private readonly run: (items: T[]) => Promise<Outcome<R>[]>;
  private waiting: Call<T, R>[] = [];
  private inFlight = 0;

  /** `run` sends one statement for the group and answers each item, in order. */
  constructor(lanes: number, run: (items: T[]) => Promise<Outcome<R>[]>) {
    this.lanes = lanes;
    this.run = run;
  }

  submit(item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.inFlight < this.lanes) void this.sendGroup();
    });
  }

  private async sendGroup(): Promise<void> {
    const group = this.waiting;
    this.waiting = [];
    this.inFlight += 1;
    try {
      const outcomes = await this.runRetrying(group.map((call) => call.item));
      group.forEach((call, index) => {
        const outcome = outcomes[index];
        if (outcome && "value" in outcome) call.resolve(outcome.value);
        else call.reject(outcome?.error ?? new AirlockError("internal", "a grouped statement answered fewer calls than it was sent"));
      });
    } catch (error) {
      for (const call of group) call.reject(error);
    } finally {
      this.inFlight -= 1;
      if (this.waiting.length > 0 && this.inFlight < this.lanes) void this.sendGroup();
    }
  }

  private async runRetrying(items: T[]): Promise<Outcome<R>[]> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.run(items);
      } catch (error) {
        if ((error as { code?: string }).code !== DEADLOCK || attempt >= TRIES) throw error;
      }
    }
  }
}
