/**
 * The gateway's DNS service (`D`): DNS over TCP framing (RFC 7766: a 2-byte length, then the
 * message), several queries per connection, answered as they resolve (each answer one write, so
 * frames never interleave). A and AAAA questions are answered from the gateway's own resolution
 * with every address the policy refuses removed; when all are refused the answer is REFUSED
 * (and the question is recorded as refused). Other types get an empty NOERROR answer (ANY gets
 * NOTIMP), other opcodes NOTIMP, malformed questions FORMERR. Every A/AAAA question is recorded
 * (protocol "dns", port 53): names are a way out too.
 *
 * Per connection: READING frames (idle 30 s ends it) -> the client ends its side -> the answers
 * still pending are written -> END. At most 32 questions wait at once (reading pauses beyond).
 */
import type { Socket } from "node:net";
import { formatIp, parseHost, toIp } from "./address.ts";
import type { GatewayContext } from "./dial.ts";
import { ByteReader } from "./reader.ts";

const IDLE_MS = 30_000;
const MAX_PENDING = 32;
const MAX_ANSWERS = 16;
const TTL_SECONDS = 30;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_ANY = 255;
export const RCODE = { noError: 0, formErr: 1, servFail: 2, nxDomain: 3, notImp: 4, refused: 5 } as const;

interface Question {
  id: number;
  flags: number;
  name: string;
  type: number;
  klass: number;
  /** The question section, copied into the answer. */
  section: Buffer;
}

/** The question of a query; a number (an rcode) when there is none to answer. */
export function parseQuestion(message: Buffer): Question | number {
  const flags = message.readUInt16BE(2);
  if ((flags >> 11) & 0xf) return RCODE.notImp;
  if (message.readUInt16BE(4) !== 1) return RCODE.formErr;
  const labels: string[] = [];
  let offset = 12;
  for (;;) {
    const length = message[offset];
    if (length === undefined || length > 63) return RCODE.formErr;
    offset += 1;
    if (length === 0) break;
    if (offset + length > message.length) return RCODE.formErr;
    labels.push(message.toString("latin1", offset, offset + length));
    offset += length;
  }
  if (offset + 4 > message.length) return RCODE.formErr;
  return {
    id: message.readUInt16BE(0),
    flags,
    name: labels.join("."),
    type: message.readUInt16BE(offset),
    klass: message.readUInt16BE(offset + 2),
    section: message.subarray(12, offset + 4),
  };
}

/** A response: the query's id, opcode and RD, RA set, the question copied, the answers. */
export function buildResponse(query: Buffer, rcode: number, question?: Question, answers: { type: number; data: Buffer }[] = []): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  const flags = query.readUInt16BE(2);
  header.writeUInt16BE(0x8000 | (flags & 0x7800) | (flags & 0x0100) | 0x0080 | rcode, 2);
  header.writeUInt16BE(question ? 1 : 0, 4);
  header.writeUInt16BE(answers.length, 6);
  const records = answers.map(({ type, data }) => {
    const record = Buffer.alloc(12 + data.length);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    record.writeUInt16BE(type, 2);
    record.writeUInt16BE(1, 4);
    record.writeUInt32BE(TTL_SECONDS, 6);
    record.writeUInt16BE(data.length, 10);
    data.copy(record, 12);
    return record;
  });
  return Buffer.concat([header, ...(question ? [question.section] : []), ...records]);
}

function addressBytes(address: string): Buffer | undefined {
  const ip = toIp(address);
  if (!ip) return undefined;
  const hex = ip.value.toString(16).padStart(ip.family === 4 ? 8 : 32, "0");
  return Buffer.from(hex, "hex");
}

/** The answer to one query message; undefined when none is due (a response sent to us). */
export async function answerQuery(ctx: GatewayContext, query: Buffer): Promise<Buffer | undefined> {
  if (query.length < 12 || query.readUInt16BE(2) & 0x8000) return undefined;
  const question = parseQuestion(query);
  if (typeof question === "number") return buildResponse(query, question);
  if (question.klass !== 1 || question.type === TYPE_ANY) return buildResponse(query, RCODE.notImp, question);
  if (question.type !== TYPE_A && question.type !== TYPE_AAAA) return buildResponse(query, RCODE.noError, question);
  const family = question.type === TYPE_A ? 4 : 6;
  const entry = ctx.ledger.open("dns", question.name, 53);
  entry.addOut(query.length + 2);
  const respond = (rcode: number, answers: { type: number; data: Buffer }[] = []): Buffer => {
    const response = buildResponse(query, rcode, question, answers);
    entry.addIn(response.length + 2);
    entry.finish();
    return response;
  };
  const refuse = (address: string | undefined, rule: string, reason: string): Buffer => {
    entry.refuse(address, rule, reason);
    ctx.refused(entry);
    return respond(RCODE.refused);
  };
  const stopped = ctx.stopped();
  if (stopped) return refuse(undefined, "limit", stopped);
  let parsed;
  try {
    parsed = parseHost(question.name);
  } catch (error) {
    return refuse(undefined, "invalid", (error as Error).message);
  }
  let candidates: string[];
  if (parsed.kind === "ip") candidates = parsed.family === family ? [parsed.address] : [];
  else {
    try {
      const answers = await ctx.resolver(parsed.name);
      const canonical = new Set<string>();
      for (const item of answers) {
        const ip = toIp(item.address);
        if (ip?.family === family) canonical.add(formatIp(ip));
      }
      candidates = [...canonical];
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENODATA") {
        entry.allow(undefined, { allowed: true, rule: "no addresses" });
        return respond(RCODE.noError);
      }
      entry.fail(`could not resolve ${parsed.name}: ${code ?? (error as Error).message}`);
      return respond(code === "ENOTFOUND" ? RCODE.nxDomain : RCODE.servFail);
    }
  }
  const checked = candidates.map((address) => ({ address, verdict: ctx.policy.check({ host: question.name, address }) }));
  const allowed = checked.filter((item) => item.verdict.allowed).slice(0, MAX_ANSWERS);
  const first = checked[0];
  if (first && allowed.length === 0) return refuse(first.address, first.verdict.rule, first.verdict.reason ?? "refused");
  entry.allow(allowed.map((item) => item.address).join(", ") || undefined, allowed[0]?.verdict ?? { allowed: true, rule: "no addresses" });
  const records = allowed.flatMap((item) => {
    const data = addressBytes(item.address);
    return data ? [{ type: question.type, data }] : [];
  });
  return respond(RCODE.noError, records);
}

export function handleDns(ctx: GatewayContext, socket: Socket): void {
  socket.setTimeout(IDLE_MS, () => socket.destroy());
  serve(ctx, socket).catch((error: unknown) => {
    ctx.logger.debug("egress dns: connection ended", { error: (error as Error).message });
    socket.destroy();
  });
}

async function serve(ctx: GatewayContext, socket: Socket): Promise<void> {
  const reader = new ByteReader(socket);
  let pending = 0;
  let ended = false;
  let wake: (() => void) | undefined;
  const done = (): void => {
    pending -= 1;
    wake?.();
    if (ended && pending === 0) socket.end();
  };
  for (;;) {
    if (pending >= MAX_PENDING) await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
    let message: Buffer;
    try {
      const length = (await reader.read(2)).readUInt16BE(0);
      message = await reader.read(length);
    } catch {
      ended = true;
      if (pending === 0) socket.end();
      return;
    }
    pending += 1;
    answerQuery(ctx, message)
      .then((answer) => {
        if (!answer || socket.destroyed) return;
        const frame = Buffer.alloc(2 + answer.length);
        frame.writeUInt16BE(answer.length, 0);
        answer.copy(frame, 2);
        socket.write(frame);
      })
      .catch((error: unknown) => ctx.logger.warn("egress dns: answering failed", { error: (error as Error).message }))
      .finally(done);
  }
}
