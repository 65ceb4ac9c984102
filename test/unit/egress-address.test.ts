/**
 * The egress address classifier: what a client asked for, read as the OS would (every numeric
 * form), and which addresses the gateway refuses on its own. Addresses here are only strings:
 * nothing is sent anywhere.
 */
import assert from "node:assert/strict";
import { isIP } from "node:net";
import { describe, it } from "node:test";
import { formatIp, parseHost, toIp } from "../../src/egress/address.ts";
import { classify, describeClassification, SPECIAL_RANGES } from "../../src/egress/ranges.ts";
import { ValidationError } from "../../src/protocol/index.ts";

const ip = (host: string): string => {
  const parsed = parseHost(host);
  assert.equal(parsed.kind, "ip", `${host} should be an address`);
  return parsed.kind === "ip" ? parsed.address : "";
};

describe("parseHost: IPv4 as glibc's inet_aton reads it", () => {
  const loopback: string[] = ["127.0.0.1", "2130706433", "0x7f000001", "0X7F000001", "0x7f.1", "0x7f.0.1", "0177.0.0.1", "0177.1", "127.1", "127.0.1", "017700000001", "0x7f.0x0.0x0.0x1", "0000000000177.0.0.1", "127.0.0.1."];
  for (const text of loopback) it(`${text} is 127.0.0.1`, () => assert.equal(ip(text), "127.0.0.1"));

  it("reads each part as C does (hex, octal, decimal) and lets the last fill the rest", () => {
    assert.equal(ip("0"), "0.0.0.0");
    assert.equal(ip("4294967295"), "255.255.255.255");
    assert.equal(ip("0xffffffff"), "255.255.255.255");
    assert.equal(ip("10.1"), "10.0.0.1");
    assert.equal(ip("10.65535"), "10.0.255.255");
    assert.equal(ip("10.16777215"), "10.255.255.255");
    assert.equal(ip("10.0.65535"), "10.0.255.255");
    assert.equal(ip("1.2.3.0x4"), "1.2.3.4");
    assert.equal(ip("0377.0377.0377.0377"), "255.255.255.255");
    assert.equal(ip("169.254.43518"), "169.254.169.254");
    assert.equal(ip("2852039166"), "169.254.169.254");
  });

  const invalid = ["256.1.1.1", "1.2.3.4.5", "1.2.3.256", "4294967296", "0x100000000", "1.16777216", "1.2.65536", "08.0.0.1", "09", "0x", "1..2", ".1.2.3", "example.123", "a.0x1f", "999999999999999999999"];
  for (const text of invalid) {
    it(`${text} is an invalid address, not a name`, () => assert.throws(() => parseHost(text), (error) => error instanceof ValidationError && /not a valid one/.test(error.message)));
  }
});

describe("parseHost: IPv6 and names", () => {
  it("reads IPv6 forms and writes them as RFC 5952 does", () => {
    assert.deepEqual(parseHost("[::1]"), { kind: "ip", address: "::1", family: 6 });
    assert.equal(ip("::ffff:127.0.0.1"), "::ffff:127.0.0.1");
    assert.equal(ip("[::ffff:127.0.0.1]"), "::ffff:127.0.0.1");
    assert.equal(ip("::ffff:7f00:1"), "::ffff:127.0.0.1");
    assert.equal(ip("0:0:0:0:0:ffff:7f00:0001"), "::ffff:127.0.0.1");
    assert.equal(ip("::7f00:1"), "::127.0.0.1");
    assert.equal(ip("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
    assert.equal(ip("2001:db8:0:0:0:0:2:1"), "2001:db8::2:1");
    assert.equal(ip("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
    assert.equal(ip("1:2:3:4:5:6:7::"), "1:2:3:4:5:6:7:0");
    assert.equal(ip("::"), "::");
    assert.equal(ip("64:ff9b::10.0.0.1"), "64:ff9b::a00:1");
  });

  it("keeps a zone apart (fe80::1%eth0, and %25 as in URLs)", () => {
    assert.deepEqual(parseHost("fe80::1%eth0"), { kind: "ip", address: "fe80::1", family: 6, zone: "eth0" });
    assert.deepEqual(parseHost("[fe80::1%25eth0]"), { kind: "ip", address: "fe80::1", family: 6, zone: "eth0" });
  });

  for (const text of ["1:2:3:4:5:6:7:8:9", "1::2::3", ":1::", "1::2:", "[::1", "::1]", "[[::1]]", "12345::", "::ffff:01.2.3.4", "::ffff:1.2.3", "[1.2.3.4]", "fe80::1%", "fe80::1%a b"]) {
    it(`${text} is invalid`, () => assert.throws(() => parseHost(text), ValidationError));
  }

  it("agrees with Node's isIP on every IPv6 address it accepts", () => {
    for (const text of ["::1", "2001:db8::1", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "fe80::", "ff02::1"]) {
      assert.equal(isIP(text), 6);
      assert.equal(isIP(ip(text)), 6);
    }
  });

  it("reads names case-insensitively, without a trailing dot", () => {
    assert.deepEqual(parseHost("Example.COM."), { kind: "name", name: "example.com" });
    assert.deepEqual(parseHost("registry.npmjs.org"), { kind: "name", name: "registry.npmjs.org" });
    assert.deepEqual(parseHost("0xg.example"), { kind: "name", name: "0xg.example" });
    assert.deepEqual(parseHost("_srv.example"), { kind: "name", name: "_srv.example" });
  });

  for (const text of ["", ".", "1.2.3.4..", "1.2.3.-4", "exa mple.com", "a..b", "-a.com", "a-.com", "%31%32%37.0.0.1", "a".repeat(64) + ".com", "ex@mple.com"]) {
    it(`${JSON.stringify(text)} is not a host`, () => assert.throws(() => parseHost(text), ValidationError));
  }

  it("formatIp round-trips through toIp", () => {
    for (const text of ["1.2.3.4", "::", "::1", "::ffff:10.0.0.1", "2001:db8::", "fe80::1:2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]) {
      const value = toIp(text);
      assert.ok(value);
      assert.equal(formatIp(value), text);
    }
  });
});

/** The address `delta` away from `address` (same family), or undefined past the ends. */
function offset(address: string, delta: bigint): string | undefined {
  const value = toIp(address);
  if (!value) return undefined;
  const next = value.value + delta;
  const max = value.family === 4 ? (1n << 32n) - 1n : (1n << 128n) - 1n;
  return next < 0n || next > max ? undefined : formatIp({ family: value.family, value: next });
}

function lastOf(range: string): string {
  const [base = "", prefix = "0"] = range.split("/");
  const bits = base.includes(":") ? 128n : 32n;
  return offset(base, (1n << (bits - BigInt(prefix))) - 1n) ?? "";
}

describe("classify: the special-purpose registries", () => {
  it("refuses the first and last address of every refused range; what lies just outside is decided by something else", () => {
    for (const entry of SPECIAL_RANGES) {
      const [first = ""] = entry.range.split("/");
      const last = lastOf(entry.range);
      for (const address of [first, last]) {
        const result = classify(address);
        if (!entry.global) assert.equal(result.global, false, `${address} (${entry.range}) should be refused`);
        // A more specific entry may decide an edge (0.0.0.0 is 0.0.0.0/32, not 0.0.0.0/8).
        if (result.range !== entry.range) {
          const inner = SPECIAL_RANGES.find((item) => item.range === result.range);
          assert.ok(inner || (!result.global && result.via) || !entry.global, `${address}: decided by ${result.range ?? "public"}, not ${entry.range}`);
        }
      }
      for (const outside of [offset(first, -1n), offset(last, 1n)]) {
        if (outside === undefined) continue;
        assert.notEqual(classify(outside).range, entry.range, `${outside} is outside ${entry.range}`);
      }
    }
  });

  const refused: [string, string, RegExp][] = [
    ["0.0.0.0", "0.0.0.0/32", /this host/],
    ["0.1.2.3", "0.0.0.0/8", /this network/],
    ["10.0.0.0", "10.0.0.0/8", /private-use \(RFC 1918\)/],
    ["10.255.255.255", "10.0.0.0/8", /private-use/],
    ["100.64.0.0", "100.64.0.0/10", /shared address space/],
    ["100.127.255.255", "100.64.0.0/10", /shared/],
    ["127.0.0.1", "127.0.0.0/8", /loopback/],
    ["127.255.255.255", "127.0.0.0/8", /loopback/],
    ["169.254.0.1", "169.254.0.0/16", /link-local/],
    ["169.254.169.254", "169.254.169.254/32", /cloud metadata service/],
    ["100.100.100.200", "100.100.100.200/32", /cloud metadata service/],
    ["172.16.0.0", "172.16.0.0/12", /private-use/],
    ["172.31.255.255", "172.16.0.0/12", /private-use/],
    ["192.0.0.0", "192.0.0.0/29", /service continuity/],
    ["192.0.0.8", "192.0.0.8/32", /dummy/],
    ["192.0.0.11", "192.0.0.0/24", /IETF protocol assignments/],
    ["192.0.0.170", "192.0.0.170/32", /NAT64\/DNS64 discovery/],
    ["192.0.2.1", "192.0.2.0/24", /TEST-NET-1/],
    ["192.88.99.1", "192.88.99.0/24", /6to4 relay/],
    ["192.168.0.1", "192.168.0.0/16", /private-use/],
    ["198.18.0.0", "198.18.0.0/15", /benchmarking/],
    ["198.19.255.255", "198.18.0.0/15", /benchmarking/],
    ["198.51.100.7", "198.51.100.0/24", /TEST-NET-2/],
    ["203.0.113.9", "203.0.113.0/24", /TEST-NET-3/],
    ["224.0.0.1", "224.0.0.0/4", /multicast/],
    ["239.255.255.255", "224.0.0.0/4", /multicast/],
    ["240.0.0.1", "240.0.0.0/4", /reserved/],
    ["255.255.255.254", "240.0.0.0/4", /reserved/],
    ["255.255.255.255", "255.255.255.255/32", /limited broadcast/],
    ["168.63.129.16", "168.63.129.16/32", /Azure/],
    ["::1", "::1/128", /loopback/],
    ["::", "::/128", /unspecified/],
    ["::2", "0.0.0.0/8", /this network.*IPv4-compatible/],
    ["::1.2.3.4", "::/96", /IPv4-compatible/],
    ["::8.8.8.8", "::/96", /IPv4-compatible/],
    ["64:ff9b:1::1", "64:ff9b:1::/48", /local-use/],
    ["100::1", "100::/64", /discard/],
    ["2001::1", "2001::/32", /TEREDO/],
    ["2001:2::1", "2001:2::/48", /benchmarking/],
    ["2001:10::1", "2001:10::/28", /ORCHID/],
    ["2001:db8::1", "2001:db8::/32", /documentation/],
    ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32", /documentation/],
    ["3fff::1", "3fff::/20", /documentation/],
    ["5f00::1", "5f00::/16", /SRv6/],
    ["fc00::1", "fc00::/7", /unique-local/],
    ["fd12:3456::1", "fc00::/7", /unique-local/],
    ["fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fc00::/7", /unique-local/],
    ["fd00:ec2::254", "fd00:ec2::254/128", /cloud metadata service/],
    ["fe80::1", "fe80::/10", /link-local/],
    ["febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::/10", /link-local/],
    ["fec0::1", "fec0::/10", /site-local/],
    ["ff02::1", "ff00::/8", /multicast/],
    ["4000::1", "outside 2000::/3", /not global unicast/],
    ["1234::1", "outside 2000::/3", /not global unicast/],
  ];
  for (const [address, range, why] of refused) {
    it(`refuses ${address} (${range})`, () => {
      const result = classify(address);
      assert.equal(result.global, false);
      assert.equal(result.range, range);
      assert.match(describeClassification(result), why);
    });
  }

  const embedded: [string, string][] = [
    ["::ffff:127.0.0.1", "127.0.0.0/8"],
    ["::ffff:7f00:1", "127.0.0.0/8"],
    ["::ffff:10.1.2.3", "10.0.0.0/8"],
    ["::ffff:169.254.169.254", "169.254.169.254/32"],
    ["::127.0.0.1", "127.0.0.0/8"],
    ["::10.0.0.1", "10.0.0.0/8"],
    ["64:ff9b::127.0.0.1", "127.0.0.0/8"],
    ["64:ff9b::a9fe:a9fe", "169.254.169.254/32"],
    ["64:ff9b::192.168.1.1", "192.168.0.0/16"],
    ["2002:7f00:1::", "127.0.0.0/8"],
    ["2002:a00:1::1", "10.0.0.0/8"],
    ["2002:c0a8:101::", "192.168.0.0/16"],
  ];
  for (const [address, range] of embedded) {
    it(`refuses ${address} by the IPv4 address inside (${range})`, () => {
      const result = classify(address);
      assert.equal(result.global, false);
      assert.equal(result.range, range);
      assert.ok(!result.global && result.via, "names the form carrying it");
      assert.match(describeClassification(result), /embedded in/);
    });
  }

  const reachable = [
    "8.8.8.8",
    "1.1.1.1",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.0.9",
    "192.0.0.10",
    "192.0.1.0",
    "192.31.196.1",
    "192.52.193.1",
    "192.167.255.255",
    "192.169.0.0",
    "192.175.48.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2001:1::1",
    "2001:1::2",
    "2001:1::3",
    "2001:3::1",
    "2001:4:112::1",
    "2001:20::1",
    "2001:30::1",
    "2620:4f:8000::1",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
    "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db9::",
  ];
  for (const address of reachable) it(`lets ${address} through`, () => assert.equal(classify(address).global, true));

  it("lets the globally reachable entries inside refused blocks through (192.0.0.9 in 192.0.0.0/24)", () => {
    assert.deepEqual(classify("192.0.0.9"), { global: true, range: "192.0.0.9/32", name: "Port Control Protocol anycast", reference: "RFC 7723" });
    assert.equal(classify("192.0.0.8").global, false);
    assert.equal(classify("2001:1::4").global, false);
    assert.equal(classify("2001:3::").global, true);
    assert.equal(classify("2001:4:112::").global, true);
    assert.equal(classify("2001:4:113::").global, false);
  });

  it("classifies the numeric forms a client may use as what they are", () => {
    assert.equal(classify(ip("2130706433")).range, "127.0.0.0/8");
    assert.equal(classify(ip("0x7f.1")).range, "127.0.0.0/8");
    assert.equal(classify(ip("0177.0.0.1")).range, "127.0.0.0/8");
    assert.equal(classify(ip("2852039166")).range, "169.254.169.254/32");
    assert.equal(classify(ip("[::ffff:a9fe:a9fe]")).range, "169.254.169.254/32");
    assert.equal(classify(ip("012.1")).range, "10.0.0.0/8");
  });
});
