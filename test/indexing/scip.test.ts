/** The SCIP reader against bytes encoded here by the protobuf wire rules, and bytes that are not an index. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { countScip, readScip } from "../../src/indexing/index.ts";
import { bytesField, text, varint, varintField } from "../helpers/protobuf.ts";


function occurrence(symbol: string, roles: number): number[] {
  return [...bytesField(1, [...varint(0), ...varint(4), ...varint(9)]), ...text(2, symbol), ...(roles ? varintField(3, roles) : [])];
}

describe("SCIP reader", () => {
  it("reads the tool, documents, their symbols and occurrences, and skips fields it does not know", () => {
    const metadata = bytesField(1, [...varintField(1, 0), ...bytesField(2, [...text(1, "scip-typescript"), ...text(2, "0.4.0"), ...text(3, "index")]), ...text(3, "file:///work"), ...varintField(4, 1)]);
    const a = bytesField(2, [...text(4, "TypeScript"), ...text(1, "src/a.ts"), ...bytesField(2, occurrence("pkg a/f().", 1)), ...bytesField(3, text(1, "pkg a/f()."))]);
    const b = bytesField(2, [...text(1, "src/b.ts"), ...bytesField(2, occurrence("pkg a/f().", 0)), ...bytesField(2, occurrence("pkg b/g().", 1)), ...bytesField(3, text(1, "pkg b/g().")), ...[0x6d, 1, 2, 3, 4]]);
    const external = bytesField(3, text(1, "npm lib x."));
    const index = readScip(Uint8Array.from([...metadata, ...a, ...b, ...external]));
    assert.deepEqual(index.tool, { name: "scip-typescript", version: "0.4.0" });
    assert.equal(index.projectRoot, "file:///work");
    assert.deepEqual(index.documents.map((document) => [document.path, document.language, document.symbols, document.occurrences]), [
      ["src/a.ts", "TypeScript", ["pkg a/f()."], [{ symbol: "pkg a/f().", roles: 1 }]],
      ["src/b.ts", "", ["pkg b/g()."], [{ symbol: "pkg a/f().", roles: 0 }, { symbol: "pkg b/g().", roles: 1 }]],
    ]);
    assert.deepEqual(countScip(index), { documents: 2, symbols: 3, occurrences: 3 });
  });

  it("refuses bytes that are not an index, saying what is wrong", () => {
    assert.throws(() => readScip(new Uint8Array()), /not a SCIP index: it has no metadata/);
    assert.throws(() => readScip(Buffer.from("hello world, not protobuf")), /not a SCIP index/);
    assert.throws(() => readScip(Uint8Array.from([0x0a, 0x10, 1])), /not a SCIP index: a field runs past the end/);
    assert.throws(() => readScip(Uint8Array.from([0x0b])), /not a SCIP index: unsupported wire type 3/);
  });
});
