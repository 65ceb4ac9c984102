import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Redactor, secretForms } from "../../src/executor/redactor.ts";

const SECRET = "s3cr3t/Value+with spaces&\"quotes\"";

function encodings(secret: string): string[] {
  const b64 = (prefix: string) => Buffer.from(prefix + secret).toString("base64");
  return [
    secret,
    b64(""),
    b64("x"),
    b64("xy"),
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
    JSON.stringify({ value: secret }),
    `Authorization: Basic ${Buffer.from(`user:${secret}`).toString("base64")}`,
  ];
}

function runThrough(redactor: Redactor, chunks: Buffer[]): string {
  return Buffer.concat([...chunks.map((chunk) => redactor.push(chunk)), redactor.end()]).toString("utf8");
}

describe("Redactor", () => {
  it("masks a secret raw, in base64 at every alignment, URL-encoded and JSON-escaped", () => {
    for (const text of encodings(SECRET)) {
      const out = runThrough(new Redactor([SECRET]), [Buffer.from(`before ${text} after\n`)]);
      assert.doesNotMatch(out, /s3cr3t/, `raw fragment leaked from ${text}`);
      for (const form of secretForms(SECRET)) assert.ok(!out.includes(form.toString()), `form ${form.toString()} leaked from ${text}: ${out}`);
      assert.match(out, /\[REDACTED\]/);
      assert.match(out, /^before /);
    }
  });

  it("masks a secret split across writes at every position", () => {
    const line = Buffer.from(`key=${SECRET};\n`);
    for (let cut = 1; cut < line.length; cut += 1) {
      const out = runThrough(new Redactor([SECRET]), [line.subarray(0, cut), line.subarray(cut)]);
      assert.equal(out, "key=[REDACTED];\n", `cut at ${cut}`);
    }
    const bytewise = runThrough(new Redactor([SECRET]), [...line].map((byte) => Buffer.from([byte])));
    assert.equal(bytewise, "key=[REDACTED];\n");
  });

  it("holds back only what could begin a secret, and releases it when it cannot", () => {
    const redactor = new Redactor(["abcdef"]);
    assert.equal(redactor.push(Buffer.from("hello abc")).toString(), "hello ");
    assert.equal(redactor.pending, 3);
    assert.equal(redactor.push(Buffer.from("xyz")).toString(), "abcxyz");
    assert.equal(redactor.pending, 0);
    assert.equal(redactor.push(Buffer.from("no secrets here\n")).toString(), "no secrets here\n");
  });

  it("passes output through untouched when there are no secrets", () => {
    const redactor = new Redactor([]);
    const data = Buffer.from([0, 1, 2, 255, 10]);
    assert.ok(redactor.push(data).equals(data));
  });

  it("masks several secrets and repeated occurrences", () => {
    const out = runThrough(new Redactor(["alpha-secret", "beta-secret"]), [Buffer.from("alpha-secret beta-secret alpha-secret")]);
    assert.equal(out, "[REDACTED] [REDACTED] [REDACTED]");
  });
});
