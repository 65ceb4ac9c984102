/** The egress record's schema and the summary the job log (and the web UI) shows. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EgressRecord, summarizeEgress, type EgressConnection } from "../../src/protocol/index.ts";

const connection = (over: Partial<EgressConnection>): EgressConnection => ({
  at: "2026-01-01T00:00:00.000Z",
  protocol: "connect",
  host: "registry.npmjs.org",
  port: 443,
  address: "104.16.0.1",
  verdict: "allowed",
  rule: "public",
  bytesOut: 1000,
  bytesIn: 3 * 1024 * 1024,
  durationMs: 120,
  ...over,
});

const record = (connections: EgressConnection[], extra: Partial<EgressRecord> = {}): EgressRecord => ({
  version: 1,
  policy: { allow: [], deny: [], maxConnections: 64 },
  totals: {
    connections: connections.length,
    allowed: connections.filter((item) => item.verdict === "allowed").length,
    refused: connections.filter((item) => item.verdict === "refused").length,
    bytesOut: connections.reduce((sum, item) => sum + item.bytesOut, 0),
    bytesIn: connections.reduce((sum, item) => sum + item.bytesIn, 0),
  },
  dropped: 0,
  connections,
  ...extra,
});

describe("egress record", () => {
  it("the schema takes a record and refuses a bad one", () => {
    const ok = record([connection({})]);
    assert.deepEqual(EgressRecord.parse(ok), ok);
    assert.equal(EgressRecord.safeParse({ ...ok, version: 2 }).success, false);
    assert.equal(EgressRecord.safeParse(record([connection({ protocol: "ftp" as never })])).success, false);
    assert.equal(EgressRecord.safeParse(record([connection({ port: 70000 })])).success, false);
  });

  it("summarizes totals, each refused destination with its reason, top destinations by bytes, the limit hit", () => {
    const refused = { verdict: "refused" as const, bytesIn: 0, bytesOut: 0, reason: "10.0.0.0/8 is private-use (RFC 1918)", rule: "deny 10.0.0.0/8 (private-use, RFC 1918)" };
    const text = summarizeEgress(
      record(
        [
          connection({}),
          connection({ host: "github.com", address: "140.82.112.3", bytesIn: 10 * 1024 * 1024 }),
          connection({ host: "internal.test", address: "10.1.2.3", port: 80, protocol: "http", ...refused }),
          connection({ host: "internal.test", address: "10.1.2.3", port: 80, protocol: "http", ...refused }),
          connection({ host: "internal.test", address: "10.1.2.3", port: 53, protocol: "dns", ...refused }),
          connection({ host: "gone.example", address: undefined, error: "could not resolve gone.example: ENOTFOUND", bytesIn: 0, bytesOut: 0 }),
        ],
        { limitHit: "the job's egress limit (resources.egress) of 10.0 MiB was reached", dropped: 3 },
      ),
    );
    const lines = text.split("\n");
    assert.match(lines[0] ?? "", /^egress: 6 connection\(s\), 3 allowed, 3 refused; 2\.0 KiB out, 13\.0 MiB in \(3 not listed in the record\)$/);
    assert.ok(lines.includes("  refused internal.test:80 (10.1.2.3) x2: 10.0.0.0/8 is private-use (RFC 1918)"));
    assert.ok(lines.includes("  refused internal.test (DNS): 10.0.0.0/8 is private-use (RFC 1918)"));
    assert.ok(lines.includes("  failed gone.example:443: could not resolve gone.example: ENOTFOUND"));
    assert.ok(lines.includes("  top destinations: github.com:443 10.0 MiB, registry.npmjs.org:443 3.0 MiB"));
    assert.ok(lines.includes("  limit: the job's egress limit (resources.egress) of 10.0 MiB was reached"));
  });

  it("is one line for a quiet job", () => {
    assert.equal(summarizeEgress(record([])), "egress: 0 connection(s), 0 allowed, 0 refused; 0 B out, 0 B in");
  });
});
