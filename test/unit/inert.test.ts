/** The CLI's inert text: colours pass, every other escape and control shows as text, in any chunking. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inert, InertText } from "../../src/cli/inert.ts";

const HOSTILE = Buffer.from("a\u001b]0;title\u0007b \u001b[2J\u001b[31mred\u001b[0m\tx\r\n\u001bP+q\u001b\\ \u00c2\u009b31m \u0000\u007f end", "latin1");

describe("inert terminal text", () => {
  it("keeps colours, tabs, newlines and CRs; shows other controls as text", () => {
    const out = inert(HOSTILE).toString("latin1");
    assert.equal(out, "a\\x1b]0;title\\x07b \\x1b[2J\u001b[31mred\u001b[0m\tx\r\n\\x1bP+q\\x1b\\ \\u009b31m \\x00\\x7f end");
  });

  it("gives the same result whatever the chunk boundaries", () => {
    const whole = inert(HOSTILE);
    for (let size = 1; size <= 7; size += 1) {
      const converter = new InertText();
      const parts: Buffer[] = [];
      for (let at = 0; at < HOSTILE.length; at += size) parts.push(converter.push(HOSTILE.subarray(at, at + size)));
      parts.push(converter.end());
      assert.deepEqual(Buffer.concat(parts), whole, `chunks of ${size} bytes`);
    }
  });

  it("leaves UTF-8 text and invalid bytes as they are", () => {
    const text = Buffer.concat([Buffer.from("héllo ✓ "), Buffer.from([0xff, 0xfe, 0x9b])]);
    assert.deepEqual(inert(text), text);
  });

  it("shows an escape cut off at the end of the stream as text", () => {
    const converter = new InertText();
    assert.equal(converter.push(Buffer.from("x\u001b[3")).toString(), "x");
    assert.equal(converter.end().toString(), "\\x1b[3");
  });
});
