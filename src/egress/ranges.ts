/**
 * Which addresses the gateway refuses on its own: every entry of the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (iana-ipv4-special-registry, iana-ipv6-special-registry),
 * plus multicast, IPv6 space outside global unicast 2000::/3, and cloud metadata services by name.
 * Entries IANA marks "Globally Reachable: True" stay reachable (`global: true`). The most specific
 * entry containing an address decides (192.0.0.9/32 inside 192.0.0.0/24).
 *
 * IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are also
 * classified by that IPv4 address: `::ffff:10.0.0.1`, `64:ff9b::a00:1` and `2002:a00:1::` are all
 * private-use. A mapped address with a public IPv4 inside is that public address (the gateway
 * connects to the IPv4 itself); NAT64 64:ff9b::/96 and 6to4 reach the embedded public address
 * through a translator or relay, so they stay reachable; IPv4-compatible addresses are deprecated
 * (RFC 4291) and always refused.
 */
import { formatIp, inCidr, parseCidr, toIp, type IpAddress } from "./address.ts";

export type Classification =
  | { global: true; range?: string; name?: string; reference?: string }
  | { global: false; range: string; name: string; reference: string; via?: string };

interface Entry {
  range: string;
  name: string;
  reference: string;
  global: boolean;
}

/** [range, name, reference, globally reachable]; IANA's "N/A" counts as not reachable. */
const IPV4: [string, string, string, boolean][] = [
  ["0.0.0.0/8", '"this network"', "RFC 791, section 3.2", false],
  ["0.0.0.0/32", '"this host on this network"', "RFC 1122, section 3.2.1.3", false],
  ["10.0.0.0/8", "private-use", "RFC 1918", false],
  ["100.64.0.0/10", "shared address space (carrier-grade NAT)", "RFC 6598", false],
  ["127.0.0.0/8", "loopback", "RFC 1122, section 3.2.1.3", false],
  ["169.254.0.0/16", "link-local", "RFC 3927", false],
  ["172.16.0.0/12", "private-use", "RFC 1918", false],
  ["192.0.0.0/24", "IETF protocol assignments", "RFC 6890, section 2.1", false],
  ["192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335", false],
  ["192.0.0.8/32", "the IPv4 dummy address", "RFC 7600", false],
  ["192.0.0.9/32", "Port Control Protocol anycast", "RFC 7723", true],
  ["192.0.0.10/32", "TURN anycast", "RFC 8155", true],
  ["192.0.0.170/32", "NAT64/DNS64 discovery", "RFC 8880, RFC 7050", false],
  ["192.0.0.171/32", "NAT64/DNS64 discovery", "RFC 8880, RFC 7050", false],
  ["192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737", false],
  ["192.31.196.0/24", "AS112-v4", "RFC 7535", true],
  ["192.52.193.0/24", "AMT", "RFC 7450", true],
  ["192.88.99.0/24", "deprecated (6to4 relay anycast)", "RFC 7526", false],
  ["192.168.0.0/16", "private-use", "RFC 1918", false],
  ["192.175.48.0/24", "direct delegation AS112 service", "RFC 7534", true],
  ["198.18.0.0/15", "benchmarking", "RFC 2544", false],
  ["198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737", false],
  ["203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737", false],
  ["240.0.0.0/4", "reserved", "RFC 1112, section 4", false],
  ["255.255.255.255/32", "limited broadcast", "RFC 8190, RFC 919 section 7", false],
  // Not special-purpose entries, refused all the same:
  ["224.0.0.0/4", "multicast", "RFC 5771", false],
  ["169.254.169.254/32", "the cloud metadata service", "link-local, RFC 3927", false],
  ["100.100.100.200/32", "the cloud metadata service (Alibaba Cloud)", "shared address space, RFC 6598", false],
  // Public space, but in Azure the platform's own endpoint (VM agent configuration, DNS, health).
  ["168.63.129.16/32", "the cloud platform service (Azure WireServer)", "Microsoft Azure", false],
];

const IPV6: [string, string, string, boolean][] = [
  ["::1/128", "loopback", "RFC 4291", false],
  ["::/128", "the unspecified address", "RFC 4291", false],
  // IANA: not reachable; a mapped address is its IPv4 address, classified as such (see the top).
  ["::ffff:0:0/96", "IPv4-mapped", "RFC 4291", true],
  ["::/96", "IPv4-compatible (deprecated)", "RFC 4291, section 2.5.5.1", false],
  ["64:ff9b::/96", "IPv4-IPv6 translation (NAT64)", "RFC 6052", true],
  ["64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215", false],
  ["100::/64", "discard-only", "RFC 6666", false],
  ["100:0:0:1::/64", "the dummy IPv6 prefix", "RFC 9780", false],
  ["2001::/23", "IETF protocol assignments", "RFC 2928", false],
  ["2001::/32", "TEREDO", "RFC 4380, RFC 8190", false],
  ["2001:1::1/128", "Port Control Protocol anycast", "RFC 7723", true],
  ["2001:1::2/128", "TURN anycast", "RFC 8155", true],
  ["2001:1::3/128", "DNS-SD service registration protocol anycast", "RFC 9665", true],
  ["2001:2::/48", "benchmarking", "RFC 5180", false],
  ["2001:3::/32", "AMT", "RFC 7450", true],
  ["2001:4:112::/48", "AS112-v6", "RFC 7535", true],
  ["2001:10::/28", "deprecated (previously ORCHID)", "RFC 4843", false],
  ["2001:20::/28", "ORCHIDv2", "RFC 7343", true],
  ["2001:30::/28", "drone remote ID protocol entity tags", "RFC 9374", true],
  ["2001:db8::/32", "documentation", "RFC 3849", false],
  // IANA: N/A; reaches the embedded IPv4 address through a relay (classified as such, see the top).
  ["2002::/16", "6to4", "RFC 3056", true],
  ["2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534", true],
  ["3fff::/20", "documentation", "RFC 9637", false],
  ["5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602", false],
  ["fc00::/7", "unique-local", "RFC 4193, RFC 8190", false],
  ["fe80::/10", "link-local unicast", "RFC 4291", false],
  // Not special-purpose entries, refused all the same:
  ["fec0::/10", "site-local (deprecated)", "RFC 3879", false],
  ["ff00::/8", "multicast", "RFC 4291", false],
  ["fd00:ec2::254/128", "the cloud metadata service (AWS)", "unique-local, RFC 4193", false],
];

interface Compiled extends Entry {
  base: IpAddress;
  prefix: number;
}

function compile(rows: [string, string, string, boolean][]): Compiled[] {
  return rows
    .map(([range, name, reference, global]) => {
      const cidr = parseCidr(range);
      if (!cidr) throw new Error(`bad built-in range ${range}`);
      return { range, name, reference, global, ...cidr };
    })
    .sort((a, b) => b.prefix - a.prefix);
}

const TABLE = [...compile(IPV4), ...compile(IPV6)];
const GLOBAL_UNICAST = { base: { family: 6 as const, value: 0x2n << 124n }, prefix: 3 };

/** Every built-in range, for docs and tests. */
export const SPECIAL_RANGES: readonly Entry[] = TABLE.map(({ range, name, reference, global }) => ({ range, name, reference, global }));

const EMBEDDING_FORMS = (
  [
    ["::ffff:0:0/96", "IPv4-mapped"],
    ["::/96", "IPv4-compatible"],
    ["64:ff9b::/96", "NAT64"],
  ] as const
).map(([range, form]) => ({ range, form, cidr: parseCidr(range) ?? { base: { family: 6 as const, value: -1n }, prefix: 128 } }));

/** The IPv4 address an IPv6 address carries, and the form carrying it. */
export function embeddedIPv4(ip: IpAddress): { ipv4: IpAddress; form: string } | undefined {
  if (ip.family !== 6) return undefined;
  for (const { range, form, cidr } of EMBEDDING_FORMS) {
    // :: and ::1 are themselves (unspecified, loopback), not IPv4-compatible forms.
    if (inCidr(ip, cidr.base, cidr.prefix) && !(range === "::/96" && ip.value <= 1n)) return { ipv4: { family: 4, value: ip.value & 0xffffffffn }, form: `${form} ${range}` };
  }
  if (ip.value >> 112n === 0x2002n) return { ipv4: { family: 4, value: (ip.value >> 80n) & 0xffffffffn }, form: "6to4 2002::/16" };
  // 64:ff9b:1::/48 (RFC 8215) leaves where the IPv4 address sits to the operator: refused as a whole.
  return undefined;
}

/** Whether the gateway would refuse `address` on its own, and which registry entry says so. */
export function classify(address: string | IpAddress): Classification {
  const ip = typeof address === "string" ? toIp(address) : address;
  if (!ip) return { global: false, range: typeof address === "string" ? address : "?", name: "not an IP address", reference: "" };
  const embedded = embeddedIPv4(ip);
  if (embedded) {
    const inner = classify(embedded.ipv4);
    if (!inner.global) return { ...inner, via: `embedded in ${formatIp(ip)} (${embedded.form})` };
  }
  const entry = TABLE.find((item) => inCidr(ip, item.base, item.prefix));
  if (entry) {
    return entry.global
      ? { global: true, range: entry.range, name: entry.name, reference: entry.reference }
      : { global: false, range: entry.range, name: entry.name, reference: entry.reference };
  }
  if (ip.family === 6 && !inCidr(ip, GLOBAL_UNICAST.base, GLOBAL_UNICAST.prefix)) {
    return { global: false, range: "outside 2000::/3", name: "not global unicast space (reserved by the IETF)", reference: "RFC 4291, section 2.4" };
  }
  return { global: true };
}

/** "10.0.0.0/8 is private-use (RFC 1918)": why a refused classification is refused. */
export function describeClassification(item: Classification): string {
  if (item.global) return "public";
  const reference = item.reference ? ` (${item.reference})` : "";
  return `${item.range} is ${item.name}${reference}${item.via ? `, ${item.via}` : ""}`;
}
