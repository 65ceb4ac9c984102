/** `until`: a wait a step's stop signal cuts short, while the work it waits on goes on. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SandboxError } from "../../src/protocol/index.ts";
import { StepAborted, until } from "../../src/runtimes/until.ts";

describe("until", () => {
  it("resolves with the promise's value while the signal stays quiet", async () => {
    assert.equal(await until(Promise.resolve(42), new AbortController().signal), 42);
  });

  it("rejects with StepAborted at once when the signal aborts, not when the work ends", async () => {
    const stop = new AbortController();
    let finish: (value: string) => void = () => undefined;
    const work = new Promise<string>((resolve) => (finish = resolve));
    const waiting = until(work, stop.signal);
    stop.abort();
    await assert.rejects(waiting, (error) => error instanceof StepAborted && error instanceof SandboxError && /stopped/.test(error.message));
    finish("late");
    assert.equal(await work, "late");
  });

  it("rejects at once on a signal that already aborted", async () => {
    await assert.rejects(until(Promise.resolve(1), AbortSignal.abort()), StepAborted);
  });

  it("passes the promise's own failure on as an Error", async () => {
    await assert.rejects(until(Promise.reject(new SandboxError("disk full")), new AbortController().signal), /disk full/);
  });
});
