/**
 * What a client asked to reach, read the way the operating system would read it: an IP literal
 * (in any of the numeric forms glibc accepts) or a host name. Addresses are bigints here, so CIDR
 * matching is plain arithmetic (see ranges.ts and policy.ts).
 *
 * IPv4, as glibc reads it (getaddrinfo calls __inet_aton_exact, the strict form of inet_aton):
 * - one to four parts separated by dots; each part is C-style: `0x`/`0X` hex, leading `0` octal,
 *   otherwise decimal (strtoul base 0). The last part fills the remaining bytes: `a` is 32 bits,
 *   `a.b` is 8.24, `a.b.c` is 8.8.16. So `2130706433`, `0x7f000001`, `0x7f.1`, `127.1` and
 *   `0177.0.0.1` all are 127.0.0.1.
 * - a part that does not start with a digit, an empty part (`1..2`, a trailing `1.2.3.4.`), a
 *   part with bad digits (`08`, `0x`, `0xg`), an earlier part over 255, a last part too big for its
 *   bytes (`256.1.1.1`, `1.16777216`), five parts (`1.2.3.4.5`), or anything after the number
 *   makes glibc say "not an address"; getaddrinfo then asks DNS for the string as a name.
 * We differ in one way, on purpose: a host whose last label looks numeric (all digits, or `0x`
 * and hex digits: the URL Standard's "ends in a number") but that glibc rejects is invalid here,
 * never looked up as a name (no real name has a numeric top-level label, and a resolver could map
 * it anywhere). One trailing dot is dropped first, for names and numbers alike (as the URL
 * Standard does): `127.0.0.1.` is 127.0.0.1, `example.com.` is example.com.
 *
 * IPv6, as glibc's inet_pton reads it: up to eight groups of 1-4 hex digits, one `::`, and an
 * optional dotted-quad IPv4 tail (strict: four decimal parts, no leading zeros). getaddrinfo also
 * takes a zone after `%` (`fe80::1%eth0`); so do we (also `%25`, its URL-encoded form), and also
 * the bracketed form of URLs and CONNECT (`[::1]`). The zone is kept apart: it never changes what
 * the address is classified as.
 */
import { ValidationError } from "../protocol/errors.ts";

export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

export type ParsedHost = { kind: "ip"; address: string; family: 4 | 6; zone?: string } | { kind: "name"; name: string };

const MAX_V4 = 0xffffffffn;
const MAX_V6 = (1n << 128n) - 1n;

/** Reads what a client asked for; throws ValidationError for malformed literals and names. */
export function parseHost(host: string): ParsedHost {
  if (host.length === 0 || host.length > 300) throw invalid(host, "is empty or too long");
  if (host.startsWith("[") || host.includes(":")) {
    const inner = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
    if (host.startsWith("[") !== host.endsWith("]") || inner.startsWith("[")) throw invalid(host, "is not a valid IPv6 address");
    const { address, zone } = splitZone(inner, host);
    const value = parseIPv6(address);
    if (value === undefined) throw invalid(host, "is not a valid IPv6 address");
    const canonical = formatIp({ family: 6, value });
    return zone === undefined ? { kind: "ip", address: canonical, family: 6 } : { kind: "ip", address: canonical, family: 6, zone };
  }
  const text = host.endsWith(".") ? host.slice(0, -1) : host;
  if (text.length === 0) throw invalid(host, "is not a host name");
  const labels = text.split(".");
  if (endsInNumber(labels[labels.length - 1] ?? "")) {
    const value = parseIPv4Loose(text);
    if (value === undefined) throw invalid(host, "looks like an IPv4 address but is not a valid one");
    return { kind: "ip", address: formatIp({ family: 4, value }), family: 4 };
  }
  if (text.length > 253 || !labels.every((label) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label))) {
    throw invalid(host, "is not a valid host name");
  }
  return { kind: "name", name: text.toLowerCase() };
}

/** An IP literal (any form parseHost takes) as a number; undefined for names and invalid text. */
export function toIp(text: string): IpAddress | undefined {
  try {
    const parsed = parseHost(text);
    return parsed.kind === "ip" ? { family: parsed.family, value: ipValue(parsed.address) } : undefined;
  } catch {
    return undefined;
  }
}

/** The value of a canonical address (from formatIp or parseHost). */
function ipValue(canonical: string): bigint {
  const value = canonical.includes(":") ? parseIPv6(canonical) : parseIPv4Strict(canonical);
  if (value === undefined) throw new ValidationError(`"${canonical}" is not an IP address`);
  return value;
}

/** IPv4 in dotted decimal; IPv6 as RFC 5952 (and inet_ntop) writes it: `::ffff:127.0.0.1` for mapped forms. */
export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((ip.value >> shift) & 0xffn)).join(".");
  const words = Array.from({ length: 8 }, (_, index) => Number((ip.value >> BigInt(112 - 16 * index)) & 0xffffn));
  // The longest run of two or more zero words (the first of equal runs) becomes "::".
  let best = { base: -1, len: 0 };
  let run = { base: -1, len: 0 };
  words.forEach((word, index) => {
    if (word === 0) {
      run = run.base === -1 ? { base: index, len: 1 } : { base: run.base, len: run.len + 1 };
      if (run.len > best.len) best = run;
    } else run = { base: -1, len: 0 };
  });
  if (best.len < 2) best = { base: -1, len: 0 };
  // inet_ntop's rule: the compatible (::a.b.c.d) and mapped (::ffff:a.b.c.d) forms end in dotted quads.
  const dotted = best.base === 0 && (best.len === 6 || (best.len === 5 && words[5] === 0xffff));
  const groups = dotted ? 6 : 8;
  let text = "";
  for (let index = 0; index < groups; index += 1) {
    if (index === best.base) {
      text += "::";
      index += best.len - 1;
      continue;
    }
    if (text !== "" && !text.endsWith(":")) text += ":";
    text += (words[index] ?? 0).toString(16);
  }
  if (dotted) text += `${text.endsWith(":") ? "" : ":"}${formatIp({ family: 4, value: ip.value & MAX_V4 })}`;
  return text;
}

/** Whether `ip` lies in `base/prefix` (same family). */
export function inCidr(ip: IpAddress, base: IpAddress, prefix: number): boolean {
  if (ip.family !== base.family) return false;
  const bits = BigInt(ip.family === 4 ? 32 : 128);
  const shift = bits - BigInt(prefix);
  return ip.value >> shift === base.value >> shift;
}

export function parseCidr(text: string): { base: IpAddress; prefix: number } | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const addressText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  const family = addressText.includes(":") ? 6 : 4;
  const value = family === 6 ? parseIPv6(addressText) : parseIPv4Strict(addressText);
  if (value === undefined || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > (family === 4 ? 32 : 128)) return undefined;
  return { base: { family, value }, prefix };
}

/** Dotted decimal, four parts, no leading zeros (inet_pton's IPv4). */
export function parseIPv4Strict(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => /^(?:0|[1-9]\d{0,2})$/.test(part) && Number(part) <= 255)) return undefined;
  return parts.reduce((value, part) => (value << 8n) | BigInt(part), 0n);
}

/** glibc's __inet_aton_exact (see the top of this file). */
function parseIPv4Loose(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length > 4) return undefined;
  const values: bigint[] = [];
  for (const part of parts) {
    let value: bigint;
    if (/^0[xX][0-9a-fA-F]+$/.test(part)) value = BigInt(`0x${part.slice(2)}`);
    else if (/^0[0-7]*$/.test(part)) value = BigInt(`0o${part.slice(1) || "0"}`);
    else if (/^[1-9]\d*$/.test(part)) value = BigInt(part);
    else return undefined;
    if (value > MAX_V4) return undefined;
    values.push(value);
  }
  const last = values.pop() ?? 0n;
  if (values.some((value) => value > 0xffn)) return undefined;
  const lastBits = BigInt(8 * (4 - values.length));
  if (last >= 1n << lastBits) return undefined;
  return values.reduce((sum, value, index) => sum | (value << BigInt(24 - 8 * index)), 0n) | last;
}

/** glibc's inet_pton6. */
export function parseIPv6(text: string): bigint | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const readGroups = (part: string, allowV4: boolean): number[] | undefined => {
    if (part === "") return [];
    const items = part.split(":");
    const words: number[] = [];
    for (const [index, item] of items.entries()) {
      if (allowV4 && index === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4Strict(item);
        if (v4 === undefined) return undefined;
        words.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) words.push(parseInt(item, 16));
      else return undefined;
    }
    return words;
  };
  const head = readGroups(halves[0] ?? "", halves.length === 1);
  const tail = halves.length === 2 ? readGroups(halves[1] ?? "", true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const total = head.length + tail.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return undefined;
  const words = [...head, ...Array<number>(8 - total).fill(0), ...tail];
  const value = words.reduce((sum, word) => (sum << 16n) | BigInt(word), 0n);
  return value <= MAX_V6 ? value : undefined;
}

function splitZone(text: string, host: string): { address: string; zone?: string } {
  const percent = text.indexOf("%");
  if (percent < 0) return { address: text };
  let zone = text.slice(percent + 1);
  if (zone.startsWith("25") && zone.length > 2) zone = zone.slice(2);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(zone)) throw invalid(host, "has an invalid zone");
  return { address: text.slice(0, percent), zone };
}

function endsInNumber(label: string): boolean {
  return /^\d+$/.test(label) || /^0[xX][0-9a-fA-F]*$/.test(label);
}

function invalid(host: string, why: string): ValidationError {
  return new ValidationError(`"${host.length > 80 ? `${host.slice(0, 80)}...` : host}" ${why}`);
}
