/** The one error mapping: a full disk, however it shows, is a 507 naming the disk; the rest keeps its status. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { toAirlockError } from "../../src/coordinator/http/errors.ts";
import { ConflictError, fromErrorBody, InsufficientStorageError, toErrorBody } from "../../src/protocol/index.ts";

const sqliteError = (errcode: number, errstr: string) => Object.assign(new Error(errstr), { code: "ERR_SQLITE_ERROR", errcode, errstr });

describe("toAirlockError", () => {
  const full: [string, unknown, RegExp][] = [
    ["SQLITE_FULL", sqliteError(13, "database or disk is full"), /SQLite: database or disk is full/],
    ["ENOSPC from a file write", Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }), /no space left on device/],
    ["Postgres disk_full", Object.assign(new Error("could not extend file: No space left on device"), { code: "53100" }), /Postgres: could not extend file/],
    ["git out of space", new Error("git fetch failed: fatal: write error: No space left on device"), /no space left on device/],
    ["a full disk as the cause", new Error("append failed", { cause: Object.assign(new Error("ENOSPC"), { code: "ENOSPC" }) }), /no space left/],
  ];
  for (const [what, error, message] of full) {
    it(`maps ${what} to 507 insufficient_storage naming the disk`, () => {
      const mapped = toAirlockError(error);
      assert.ok(mapped instanceof InsufficientStorageError);
      assert.equal(mapped.status, 507);
      assert.match(mapped.message, /the coordinator's disk is full/);
      assert.match(mapped.message, message);
    });
  }

  it("leaves other errors alone: other SQLite errors are internal, typed errors keep their status", () => {
    assert.equal(toAirlockError(sqliteError(1, "SQL logic error")).status, 500);
    assert.equal(toAirlockError(sqliteError(5, "database is locked")).status, 500);
    assert.equal(toAirlockError(new ConflictError("taken")).status, 409);
    assert.equal(toAirlockError(new Error("boom")).message, "internal error");
  });

  it("round-trips insufficient_storage through the wire form, so clients can retry it like any 5xx", () => {
    const error = new InsufficientStorageError("the coordinator's disk is full (no space left on device)");
    const back = fromErrorBody(507, toErrorBody(error));
    assert.ok(back instanceof InsufficientStorageError);
    assert.equal(back.message, error.message);
  });
});
