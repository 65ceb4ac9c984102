/** Egress rules and their precedence: operator deny > operator allow > built-in refusals > public; a job's list only narrows. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildPolicy, parseEgressRule } from "../../src/egress/policy.ts";
import { ValidationError } from "../../src/protocol/index.ts";

describe("parseEgressRule", () => {
  it("reads CIDRs, addresses, host:port, [v6]:port, names and wildcards", () => {
    assert.deepEqual(parseEgressRule("10.0.0.0/8"), { kind: "address", text: "10.0.0.0/8", base: { family: 4, value: 0x0a000000n }, prefix: 8 });
    assert.equal(parseEgressRule("fd00::/8").text, "fd00::/8");
    assert.equal(parseEgressRule("FD00:0::/8").text, "fd00::/8");
    assert.equal(parseEgressRule("0.0.0.0/0").text, "0.0.0.0/0");
    assert.equal(parseEgressRule("192.0.2.7").text, "192.0.2.7");
    assert.equal(parseEgressRule("192.0.2.7:443").port, 443);
    assert.equal(parseEgressRule("fd00::5").text, "fd00::5");
    const bracketed = parseEgressRule("[fd00::5]:8080");
    assert.equal(bracketed.kind, "address");
    assert.equal(bracketed.text, "[fd00::5]:8080");
    assert.equal(bracketed.port, 8080);
    assert.deepEqual(parseEgressRule("Mirror.Internal:443"), { kind: "name", text: "mirror.internal:443", name: "mirror.internal", wildcard: false, port: 443 });
    assert.deepEqual(parseEgressRule("mirror.internal."), { kind: "name", text: "mirror.internal", name: "mirror.internal", wildcard: false });
    assert.deepEqual(parseEgressRule("*.example.com:443"), { kind: "name", text: "*.example.com:443", name: "example.com", wildcard: true, port: 443 });
  });

  const bad: [string, RegExp][] = [
    ["", /empty/],
    ["10.0.0.1/8", /did you mean 10\.0\.0\.0\/8/],
    ["10.0.0.0/33", /not a CIDR/],
    ["10.0.0/8", /not a CIDR/],
    ["fd00::/129", /not a CIDR/],
    ["mirror.internal:0", /not a port/],
    ["mirror.internal:65536", /not a port/],
    ["mirror.internal:http", /not a port/],
    ["[fd00::5]:", /not a port/],
    ["256.1.1.1", /not a valid one/],
    ["*.10.0.0.1", /./],
    ["exa mple.com", /not a valid host name/],
    ["[mirror.internal]:80", /IPv6/],
    ["fe80::1%eth0", /zone/],
  ];
  for (const [text, why] of bad) {
    it(`refuses ${JSON.stringify(text)}, naming it`, () => {
      assert.throws(
        () => parseEgressRule(text),
        (error) => error instanceof ValidationError && error.message.includes(`"${text}"`) && why.test(error.message),
      );
    });
  }

  it("buildPolicy names the list and the entry it cannot read", () => {
    assert.throws(() => buildPolicy({ allow: ["10.0.0.0/8", "nope nope"], deny: [], ownAddresses: [] }), (error) => error instanceof ValidationError && /egress allow: egress rule "nope nope"/.test(error.message));
    assert.throws(() => buildPolicy({ allow: [], deny: [], ownAddresses: [], jobAllow: ["1.2.3.4/40"] }), (error) => error instanceof ValidationError && error.field === "network.allow");
  });
});

describe("EgressPolicy.check", () => {
  const base = { allow: [] as string[], deny: [] as string[], ownAddresses: [] as string[] };

  it("allows public addresses and refuses special-purpose ones, naming the range", () => {
    const policy = buildPolicy(base);
    assert.deepEqual(policy.check({ host: "example.com", address: "93.184.216.34", port: 443 }), { allowed: true, rule: "public" });
    assert.deepEqual(policy.check({ host: "internal.test", address: "10.9.0.5", port: 80 }), {
      allowed: false,
      rule: "deny 10.0.0.0/8 (private-use, RFC 1918)",
      reason: "10.0.0.0/8 is private-use (RFC 1918)",
    });
    const metadata = policy.check({ host: "169.254.169.254", address: "169.254.169.254", port: 80 });
    assert.equal(metadata.allowed, false);
    assert.match(metadata.reason ?? "", /cloud metadata service/);
    assert.equal(policy.check({ host: "x", address: "::ffff:10.0.0.1", port: 80 }).allowed, false);
  });

  it("refuses the executor's and coordinator's own addresses, also in mapped form", () => {
    const policy = buildPolicy({ ...base, ownAddresses: ["203.0.114.10", "2001:db9::10", "fe80::1%eth0"] });
    const verdict = policy.check({ host: "coordinator.example", address: "203.0.114.10", port: 8080 });
    assert.equal(verdict.allowed, false);
    assert.equal(verdict.rule, "deny 203.0.114.10 (own address)");
    assert.match(verdict.reason ?? "", /address of this executor or its coordinator/);
    assert.equal(policy.check({ host: "x", address: "::ffff:203.0.114.10", port: 1 }).allowed, false);
    assert.equal(policy.check({ host: "x", address: "2001:db9::10", port: 1 }).allowed, false);
    assert.equal(policy.check({ host: "x", address: "203.0.114.11", port: 1 }).allowed, true);
  });

  it("operator allow beats the built-in refusals (a private mirror), operator deny beats allow", () => {
    const policy = buildPolicy({ allow: ["10.1.0.0/16", "mirror.internal:443", "203.0.114.10"], deny: ["10.1.2.0/24", "8.8.8.8", "evil.example"], ownAddresses: ["203.0.114.10"] });
    assert.deepEqual(policy.check({ host: "10.1.9.9", address: "10.1.9.9", port: 80 }), { allowed: true, rule: "allow 10.1.0.0/16" });
    assert.deepEqual(policy.check({ host: "x", address: "::ffff:10.1.9.9", port: 80 }), { allowed: true, rule: "allow 10.1.0.0/16" });
    assert.equal(policy.check({ host: "10.1.2.3", address: "10.1.2.3", port: 80 }).rule, "deny 10.1.2.0/24 (--egress-deny)");
    assert.equal(policy.check({ host: "8.8.8.8", address: "8.8.8.8", port: 53 }).allowed, false);
    assert.equal(policy.check({ host: "evil.example", address: "93.184.216.34", port: 443 }).allowed, false);
    assert.equal(policy.check({ host: "EVIL.example.", address: "93.184.216.34", port: 443 }).allowed, false);
    // A name rule matches the name asked, whatever it resolves to; with a port, that port only.
    assert.deepEqual(policy.check({ host: "mirror.internal", address: "10.7.7.7", port: 443 }), { allowed: true, rule: "allow mirror.internal:443" });
    assert.equal(policy.check({ host: "mirror.internal", address: "10.7.7.7", port: 80 }).allowed, false);
    assert.equal(policy.check({ host: "10.7.7.7", address: "10.7.7.7", port: 443 }).allowed, false);
    // Operator allow beats the own-address refusal too.
    assert.equal(policy.check({ host: "x", address: "203.0.114.10", port: 80 }).allowed, true);
  });

  it("deny rules also match the IPv4 address carried by NAT64 and 6to4 forms; allow rules only the mapped one", () => {
    const policy = buildPolicy({ allow: ["198.51.100.0/24"], deny: ["8.8.8.0/24"], ownAddresses: [] });
    assert.equal(policy.check({ host: "x", address: "64:ff9b::8.8.8.8", port: 53 }).allowed, false);
    assert.equal(policy.check({ host: "x", address: "2002:808:808::1", port: 53 }).allowed, false);
    assert.equal(policy.check({ host: "x", address: "::ffff:8.8.8.8", port: 53 }).allowed, false);
    assert.equal(policy.check({ host: "x", address: "::ffff:198.51.100.1", port: 80 }).allowed, true);
    assert.equal(policy.check({ host: "x", address: "64:ff9b::198.51.100.1", port: 80 }).allowed, false);
  });

  it("wildcards match names under the domain, not the domain itself", () => {
    const policy = buildPolicy({ allow: [], deny: ["*.tracker.example"], ownAddresses: [] });
    assert.equal(policy.check({ host: "a.tracker.example", address: "93.184.216.34", port: 443 }).allowed, false);
    assert.equal(policy.check({ host: "a.b.tracker.example", address: "93.184.216.34", port: 443 }).allowed, false);
    assert.equal(policy.check({ host: "tracker.example", address: "93.184.216.34", port: 443 }).allowed, true);
    assert.equal(policy.check({ host: "nottracker.example", address: "93.184.216.34", port: 443 }).allowed, true);
  });

  it("a job's list narrows what the executor allows and never widens it", () => {
    const policy = buildPolicy({ allow: ["10.1.0.0/16"], deny: [], ownAddresses: [], jobAllow: ["registry.npmjs.org:443", "10.1.0.0/16", "10.2.0.0/16", "192.168.1.1"] });
    assert.deepEqual(policy.check({ host: "registry.npmjs.org", address: "104.16.0.1", port: 443 }), { allowed: true, rule: "public; job allows registry.npmjs.org:443" });
    const other = policy.check({ host: "example.com", address: "93.184.216.34", port: 443 });
    assert.equal(other.allowed, false);
    assert.equal(other.rule, "not in network.allow");
    assert.equal(other.reason, "example.com:443 is not in the job's network.allow list");
    assert.equal(policy.check({ host: "registry.npmjs.org", address: "104.16.0.1", port: 80 }).allowed, false);
    assert.equal(policy.check({ host: "10.1.0.5", address: "10.1.0.5", port: 22 }).rule, "allow 10.1.0.0/16; job allows 10.1.0.0/16");
    // The job names private ranges the executor refuses: still refused, by the executor's rule.
    assert.equal(policy.check({ host: "10.2.0.5", address: "10.2.0.5", port: 22 }).rule, "deny 10.0.0.0/8 (private-use, RFC 1918)");
    assert.equal(policy.check({ host: "192.168.1.1", address: "192.168.1.1", port: 80 }).allowed, false);
    assert.deepEqual(policy.jobAllow, ["registry.npmjs.org:443", "10.1.0.0/16", "10.2.0.0/16", "192.168.1.1"]);
  });

  it("without a port (a DNS question), port rules still allow the name but never deny it", () => {
    const policy = buildPolicy({ allow: [], deny: ["smtp.example:25"], ownAddresses: [], jobAllow: ["registry.npmjs.org:443"] });
    assert.equal(policy.check({ host: "registry.npmjs.org", address: "104.16.0.1" }).allowed, true);
    assert.equal(policy.check({ host: "smtp.example", address: "93.184.216.34", port: 25 }).allowed, false);
    const open = buildPolicy({ allow: [], deny: ["smtp.example:25"], ownAddresses: [] });
    assert.equal(open.check({ host: "smtp.example", address: "93.184.216.34" }).allowed, true);
    assert.equal(open.check({ host: "smtp.example", address: "93.184.216.34", port: 587 }).allowed, true);
  });

  it("refuses what is not an address or not a host", () => {
    const policy = buildPolicy(base);
    assert.equal(policy.check({ host: "x", address: "example.com", port: 80 }).allowed, false);
    assert.equal(policy.check({ host: "bad host", address: "93.184.216.34", port: 80 }).allowed, false);
  });
});
