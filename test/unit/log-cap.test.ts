import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EntryCap, LogBudget } from "../../src/executor/log-cap.ts";

describe("log cap", () => {
  it("passes everything under the cap", () => {
    const cap = new EntryCap(new LogBudget(1000));
    assert.equal(cap.push(Buffer.from("a".repeat(400))).length, 400);
    assert.equal(cap.end().length, 0);
  });

  it("keeps the head and the tail and states the gap", () => {
    const cap = new EntryCap(new LogBudget(100));
    const lines = Array.from({ length: 50 }, (_, index) => `line ${String(index).padStart(2, "0")}\n`).join("");
    const shipped = Buffer.concat([cap.push(Buffer.from(lines.slice(0, 200))), cap.push(Buffer.from(lines.slice(200))), cap.end()]).toString();
    assert.ok(shipped.startsWith(lines.slice(0, 50)), "the head (half the cap) is kept");
    assert.ok(shipped.endsWith(lines.slice(-50)), "the tail (half the cap) is kept");
    const omitted = lines.length - 100;
    assert.match(shipped, new RegExp(`${omitted} bytes omitted`));
    assert.match(shipped, /log cap of 100 bytes reached/);
  });

  it("shares the head budget across the entries of a job", () => {
    const budget = new LogBudget(100);
    const first = new EntryCap(budget);
    const second = new EntryCap(budget);
    assert.equal(first.push(Buffer.from("x".repeat(40))).length, 40);
    const shipped = second.push(Buffer.from("y".repeat(40))).toString();
    assert.ok(shipped.startsWith("y".repeat(10)), "only the 10 bytes left of the head go out at once");
    assert.match(second.end().toString(), /30 bytes omitted|the last 30 bytes/);
  });
});
