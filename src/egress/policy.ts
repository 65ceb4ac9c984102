/**
 * Egress rules and the verdict on one destination. Precedence, first match wins:
 *   1. the operator's deny list (`--egress-deny`)
 *   2. the operator's allow list (`--egress-allow`: a private mirror)
 *   3. the built-in refusals: special-purpose ranges (ranges.ts), then the executor's and the
 *      coordinator's own addresses
 *   4. everything else (public) is allowed.
 * A job's own list (`network.allow`) only narrows: when given, an allowed destination must also
 * match one of its entries; it never allows what the executor refuses.
 *
 * Rules: a CIDR (`10.0.0.0/8`, `fd00::/8`), an address (`192.0.2.7`, `fd00::5`), either with a
 * port (`192.0.2.7:443`, `[fd00::5]:8080`), a host name with or without a port
 * (`mirror.internal:443`), or `*.example.com[:port]` for every name under example.com (not the
 * name itself). Name rules match the name the client asked for (case-insensitive, trailing dot
 * ignored), never a literal address. Address rules match the resolved address; deny rules also
 * match any IPv4 address it carries (mapped, compatible, NAT64, 6to4), allow rules only the
 * IPv4-mapped one (the gateway connects to that IPv4 address itself).
 * Without a port (a DNS question), a rule with a port still allows the name but never denies it.
 */
import { ValidationError } from "../protocol/errors.ts";
import { formatIp, inCidr, parseCidr, parseHost, toIp, type IpAddress } from "./address.ts";
import { classify, describeClassification, embeddedIPv4 } from "./ranges.ts";

export type EgressRule =
  | { kind: "address"; text: string; base: IpAddress; prefix: number; port?: number }
  | { kind: "name"; text: string; name: string; wildcard: boolean; port?: number };

export interface EgressTarget {
  /** What the client asked for: a name or a literal address. */
  host: string;
  /** The resolved address that would be connected to. */
  address: string;
  /** Undefined for a DNS question (any port). */
  port?: number;
}

export interface EgressVerdict {
  allowed: boolean;
  /** The rule that decided: "allow 192.0.2.0/24", "deny 10.0.0.0/8 (private-use, RFC 1918)", "public". */
  rule: string;
  /** Why, in a sentence, for refusals. */
  reason?: string;
}

export interface EgressPolicy {
  readonly allow: string[];
  readonly deny: string[];
  readonly jobAllow: string[] | undefined;
  check(target: EgressTarget): EgressVerdict;
}

export interface PolicyOptions {
  allow: string[];
  deny: string[];
  /** The executor's and the coordinator's addresses. */
  ownAddresses: string[];
  jobAllow?: string[];
}

/** Reads one rule; a ValidationError names the entry it cannot read. */
export function parseEgressRule(input: string): EgressRule {
  const text = input.trim();
  const fail = (why: string): never => {
    throw new ValidationError(`egress rule "${input}": ${why}`);
  };
  if (text === "") return fail("is empty");
  if (text.includes("/")) {
    const cidr = parseCidr(text);
    if (!cidr) return fail("is not a CIDR (address/prefix, like 10.0.0.0/8 or fd00::/8)");
    const bits = BigInt(cidr.base.family === 4 ? 32 : 128);
    const mask = (1n << (bits - BigInt(cidr.prefix))) - 1n;
    if ((cidr.base.value & mask) !== 0n) {
      fail(`has bits set beyond its /${cidr.prefix} prefix (did you mean ${formatIp({ family: cidr.base.family, value: cidr.base.value & ~mask })}/${cidr.prefix}?)`);
    }
    return { kind: "address", text: `${formatIp(cidr.base)}/${cidr.prefix}`, base: cidr.base, prefix: cidr.prefix };
  }
  let host = text;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    host = `[${bracketed[1] ?? ""}]`; // parseHost takes only an IPv6 address in brackets
    if (bracketed[2] !== undefined) port = readPort(bracketed[2], fail);
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const colon = text.indexOf(":");
    host = text.slice(0, colon);
    port = readPort(text.slice(colon + 1), fail);
  }
  const wildcard = host.startsWith("*.");
  let parsed;
  try {
    parsed = parseHost(wildcard ? host.slice(2) : host);
  } catch (error) {
    return fail((error as Error).message);
  }
  const portText = port === undefined ? "" : `:${port}`;
  const withPort = port === undefined ? {} : { port };
  if (parsed.kind === "name") {
    return { kind: "name", text: `${wildcard ? "*." : ""}${parsed.name}${portText}`, name: parsed.name, wildcard, ...withPort };
  }
  if (wildcard) return fail("a wildcard goes with a host name, not an address");
  if (parsed.zone !== undefined) return fail("an address in a rule takes no zone");
  const base = toIp(parsed.address);
  if (!base) return fail("is not an address");
  const shown = parsed.family === 6 && port !== undefined ? `[${parsed.address}]${portText}` : `${parsed.address}${portText}`;
  return { kind: "address", text: shown, base, prefix: parsed.family === 4 ? 32 : 128, ...withPort };
}

function readPort(text: string, fail: (why: string) => never): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) fail(`"${text}" is not a port (1-65535)`);
  return Number(text);
}

function parseList(entries: string[], label: string): EgressRule[] {
  return entries.map((entry) => {
    try {
      return parseEgressRule(entry);
    } catch (error) {
      throw new ValidationError(`${label}: ${(error as Error).message}`, { field: label });
    }
  });
}

interface Subject {
  name: string | undefined;
  /** The address itself, then the IPv4 address it carries (if any). */
  addresses: IpAddress[];
  /** Only the address and its IPv4-mapped IPv4: what allow rules look at. */
  allowAddresses: IpAddress[];
  port: number | undefined;
}

function matches(rule: EgressRule, subject: Subject, mode: "allow" | "deny"): boolean {
  if (rule.port !== undefined && subject.port !== rule.port && !(subject.port === undefined && mode === "allow")) return false;
  if (rule.kind === "name") {
    if (subject.name === undefined) return false;
    return rule.wildcard ? subject.name.endsWith(`.${rule.name}`) : subject.name === rule.name;
  }
  const candidates = mode === "deny" ? subject.addresses : subject.allowAddresses;
  return candidates.some((ip) => inCidr(ip, rule.base, rule.prefix));
}

export function buildPolicy(options: PolicyOptions): EgressPolicy {
  const allow = parseList(options.allow, "egress allow");
  const deny = parseList(options.deny, "egress deny");
  const jobAllow = options.jobAllow ? parseList(options.jobAllow, "network.allow") : undefined;
  const own = options.ownAddresses.map((address) => {
    const ip = toIp(address.replace(/%.*$/, ""));
    if (!ip) throw new ValidationError(`own address "${address}" is not an IP address`);
    return ip;
  });
  const isOwn = (subject: Subject): IpAddress | undefined =>
    own.find((item) => subject.addresses.some((ip) => ip.family === item.family && ip.value === item.value));

  const executorVerdict = (subject: Subject, ip: IpAddress): EgressVerdict => {
    const denied = deny.find((rule) => matches(rule, subject, "deny"));
    if (denied) return { allowed: false, rule: `deny ${denied.text} (--egress-deny)`, reason: `${denied.text} is in the executor's deny list` };
    const allowed = allow.find((rule) => matches(rule, subject, "allow"));
    if (allowed) return { allowed: true, rule: `allow ${allowed.text}` };
    const classification = classify(ip);
    if (!classification.global) {
      return {
        allowed: false,
        rule: `deny ${classification.range} (${classification.name}${classification.reference ? `, ${classification.reference}` : ""})`,
        reason: describeClassification(classification),
      };
    }
    const mine = isOwn(subject);
    if (mine) {
      const text = formatIp(mine);
      return { allowed: false, rule: `deny ${text} (own address)`, reason: `${text} is an address of this executor or its coordinator` };
    }
    return { allowed: true, rule: "public" };
  };

  return {
    allow: allow.map((rule) => rule.text),
    deny: deny.map((rule) => rule.text),
    jobAllow: jobAllow?.map((rule) => rule.text),
    check(target: EgressTarget): EgressVerdict {
      const ip = toIp(target.address);
      if (!ip) return { allowed: false, rule: "invalid", reason: `"${target.address}" is not an IP address` };
      const embedded = embeddedIPv4(ip);
      let name: string | undefined;
      try {
        const asked = parseHost(target.host);
        if (asked.kind === "name") name = asked.name;
      } catch {
        return { allowed: false, rule: "invalid", reason: `"${target.host}" is not a valid host` };
      }
      const subject: Subject = {
        name,
        addresses: embedded ? [ip, embedded.ipv4] : [ip],
        allowAddresses: embedded?.form.startsWith("IPv4-mapped") ? [ip, embedded.ipv4] : [ip],
        port: target.port,
      };
      const verdict = executorVerdict(subject, ip);
      if (!verdict.allowed || !jobAllow) return verdict;
      const narrowed = jobAllow.find((rule) => matches(rule, subject, "allow"));
      if (!narrowed) {
        const shown = target.port === undefined ? target.host : `${target.host}:${target.port}`;
        return { allowed: false, rule: "not in network.allow", reason: `${shown} is not in the job's network.allow list` };
      }
      return { allowed: true, rule: `${verdict.rule}; job allows ${narrowed.text}` };
    },
  };
}
