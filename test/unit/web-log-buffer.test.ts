/** The web UI's log buffer (web/src/log-buffer.ts): lines from chunks, styles per line, bounds. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PLAIN } from "../../web/src/ansi.ts";
import { LogBuffer, MAX_LINE } from "../../web/src/log-buffer.ts";

const lines = (buffer: LogBuffer) => Array.from({ length: buffer.length }, (_, index) => buffer.line(index).text);

describe("LogBuffer", () => {
  it("joins lines split across chunks and shows an unfinished last line", () => {
    const buffer = new LogBuffer();
    buffer.append("one\ntw");
    assert.deepEqual(lines(buffer), ["one", "tw"]);
    buffer.append("o\r\nthree\n");
    assert.deepEqual(lines(buffer), ["one", "two", "three"]);
    buffer.append("");
    assert.equal(buffer.length, 3);
    assert.equal(buffer.lineNumber(2), 3);
  });

  it("keeps the style each line starts with", () => {
    const buffer = new LogBuffer();
    buffer.append("\x1b[31mred starts\nstill red\n\x1b[0mplain\n");
    assert.equal(buffer.line(0).start, PLAIN);
    assert.equal(buffer.line(1).start.fg, 1);
    assert.equal(buffer.line(2).start.fg, 1);
    buffer.append("next");
    assert.equal(buffer.line(3).start, PLAIN);
  });

  it("splits a line longer than MAX_LINE instead of growing without end", () => {
    const buffer = new LogBuffer();
    buffer.append("x".repeat(MAX_LINE * 2 + 5));
    assert.equal(buffer.length, 3);
    assert.equal(buffer.line(2).text, "xxxxx");
  });

  it("drops the oldest lines beyond its limits and counts them", () => {
    const buffer = new LogBuffer({ maxChars: 1_000_000, maxLines: 100 });
    for (let index = 1; index <= 250; index += 1) buffer.append(`line ${index}\n`);
    assert.ok(buffer.length <= 100);
    assert.equal(buffer.dropped + buffer.length, 250);
    assert.equal(buffer.line(buffer.length - 1).text, "line 250");
    assert.equal(buffer.lineNumber(buffer.length - 1), 250, "numbers count the dropped lines");
    const byChars = new LogBuffer({ maxChars: 1000, maxLines: 1_000_000 });
    for (let index = 0; index < 100; index += 1) byChars.append(`${"y".repeat(99)}\n`);
    assert.ok(byChars.length * 100 <= 1000);
    assert.equal(byChars.dropped + byChars.length, 100);
  });

  it("holds 100k lines and bumps its version on change", () => {
    const buffer = new LogBuffer();
    const before = buffer.version;
    buffer.append(Array.from({ length: 100_000 }, (_, index) => `line ${index + 1}`).join("\n") + "\n");
    assert.equal(buffer.length, 100_000);
    assert.equal(buffer.line(99_999).text, "line 100000");
    assert.ok(buffer.version > before);
    buffer.clear();
    assert.equal(buffer.length, 0);
  });
});
