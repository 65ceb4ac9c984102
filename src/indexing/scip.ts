/**
 * A reader of the few fields of a SCIP index (scip.proto, github.com/sourcegraph/scip) that
 * Airlock counts and checks: the tool, each document's path, its symbols and its occurrences, and
 * the external symbols. Protobuf wire format only; fields it does not know are skipped.
 *   Index: metadata = 1, documents = 2, external_symbols = 3
 *   Metadata: tool_info = 2 (name = 1, version = 2), project_root = 3
 *   Document: relative_path = 1, occurrences = 2, symbols = 3, language = 4
 *   Occurrence: range = 1, symbol = 2, symbol_roles = 3
 *   SymbolInformation: symbol = 1
 */
import { ValidationError } from "../protocol/index.ts";

export interface ScipOccurrence {
  symbol: string;
  /** Bit 1 (0x1) is Definition. */
  roles: number;
}

export interface ScipDocument {
  path: string;
  language: string;
  symbols: string[];
  occurrences: ScipOccurrence[];
}

export interface ScipIndex {
  tool: { name: string; version: string };
  projectRoot: string;
  documents: ScipDocument[];
  externalSymbols: number;
}

export const DEFINITION_ROLE = 1;

class Reader {
  private offset: number;
  private readonly bytes: Uint8Array;
  private readonly end: number;
  constructor(bytes: Uint8Array, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.offset = start;
    this.end = end;
  }
  done(): boolean {
    return this.offset >= this.end;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.offset >= this.end) throw new ValidationError("not a SCIP index: truncated varint");
      const byte = this.bytes[this.offset++] as number;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) return result;
      scale *= 128;
    }
    throw new ValidationError("not a SCIP index: varint longer than 10 bytes");
  }
  private skip(count: number): void {
    if (this.offset + count > this.end) throw new ValidationError("not a SCIP index: a field runs past the end");
    this.offset += count;
  }
  string(): string {
    return new TextDecoder("utf-8", { fatal: false }).decode(this.bytes.subarray(this.offset, this.end));
  }
  /** Visits each field: a reader of its bytes when length-delimited, its value when a varint. */
  fields(visit: (number: number, sub: Reader | undefined, value: number | undefined) => void): void {
    while (!this.done()) {
      const key = this.varint();
      const wire = key % 8;
      const number = Math.floor(key / 8);
      if (number === 0) throw new ValidationError("not a SCIP index: field number 0");
      if (wire === 0) {
        visit(number, undefined, this.varint());
      } else if (wire === 1 || wire === 5) {
        this.skip(wire === 1 ? 8 : 4);
      } else if (wire === 2) {
        const length = this.varint();
        const start = this.offset;
        this.skip(length);
        visit(number, new Reader(this.bytes, start, start + length), undefined);
      } else {
        throw new ValidationError(`not a SCIP index: unsupported wire type ${wire}`);
      }
    }
  }
}

function readOccurrence(reader: Reader): ScipOccurrence {
  const occurrence: ScipOccurrence = { symbol: "", roles: 0 };
  reader.fields((number, sub, value) => {
    if (number === 2 && sub) occurrence.symbol = sub.string();
    if (number === 3 && value !== undefined) occurrence.roles = value;
  });
  return occurrence;
}

function readSymbolName(reader: Reader): string {
  let name = "";
  reader.fields((number, sub) => {
    if (number === 1 && sub) name = sub.string();
  });
  return name;
}

function readDocument(reader: Reader): ScipDocument {
  const document: ScipDocument = { path: "", language: "", symbols: [], occurrences: [] };
  reader.fields((number, sub) => {
    if (!sub) return;
    if (number === 1) document.path = sub.string();
    else if (number === 2) document.occurrences.push(readOccurrence(sub));
    else if (number === 3) document.symbols.push(readSymbolName(sub));
    else if (number === 4) document.language = sub.string();
  });
  return document;
}

/** Parses an index; a ValidationError says what is wrong with bytes that are not one. */
export function readScip(bytes: Uint8Array): ScipIndex {
  const index: ScipIndex = { tool: { name: "", version: "" }, projectRoot: "", documents: [], externalSymbols: 0 };
  let metadata = false;
  new Reader(bytes).fields((number, sub) => {
    if (!sub) return;
    if (number === 1) {
      metadata = true;
      sub.fields((field, inner) => {
        if (field === 3 && inner) index.projectRoot = inner.string();
        if (field === 2 && inner) {
          inner.fields((toolField, value) => {
            if (toolField === 1 && value) index.tool.name = value.string();
            if (toolField === 2 && value) index.tool.version = value.string();
          });
        }
      });
    } else if (number === 2) index.documents.push(readDocument(sub));
    else if (number === 3) index.externalSymbols++;
  });
  if (!metadata) throw new ValidationError("not a SCIP index: it has no metadata (field 1)");
  return index;
}

/** What `index show` prints: documents, symbols (defined in documents, and external), occurrences. */
export function countScip(index: ScipIndex): { documents: number; symbols: number; occurrences: number } {
  let symbols = index.externalSymbols;
  let occurrences = 0;
  for (const document of index.documents) {
    symbols += document.symbols.length;
    occurrences += document.occurrences.length;
  }
  return { documents: index.documents.length, symbols, occurrences };
}
