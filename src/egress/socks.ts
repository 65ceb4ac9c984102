/**
 * The gateway's SOCKS5 service (`S`, RFC 1928): no authentication, CONNECT only, to an IPv4,
 * IPv6 or domain address. Other commands get 0x07 (command not supported), other address types
 * 0x08, refusals 0x02 (not allowed by ruleset); names are resolved by the gateway (dial.ts).
 *
 * Per connection: GREETING -> REQUEST (30 s for both) -> DIAL -> reply -> TUNNEL (bytes sent
 * after the request, before the reply, go upstream first). Any protocol error closes the socket.
 */
import type { Socket } from "node:net";
import { formatIp } from "./address.ts";
import { dial, type DialResult, type GatewayContext } from "./dial.ts";
import { ByteReader } from "./reader.ts";

const HANDSHAKE_MS = 30_000;

export const SOCKS_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

/** A reply with BND.ADDR 0.0.0.0:0: the executor's own address is none of the client's business. */
function reply(code: number): Buffer {
  return Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}

function failureCode(result: Extract<DialResult, { ok: false }>): number {
  if (result.failure === "refused") return SOCKS_REPLY.notAllowed;
  if (result.failure === "unresolved") return SOCKS_REPLY.hostUnreachable;
  switch (result.code) {
    case "ECONNREFUSED":
      return SOCKS_REPLY.connectionRefused;
    case "ENETUNREACH":
      return SOCKS_REPLY.networkUnreachable;
    case "EHOSTUNREACH":
    case "ETIMEDOUT":
      return SOCKS_REPLY.hostUnreachable;
    default:
      return SOCKS_REPLY.generalFailure;
  }
}

export function handleSocks(ctx: GatewayContext, socket: Socket): void {
  socket.setTimeout(HANDSHAKE_MS, () => socket.destroy());
  serve(ctx, socket).catch((error: unknown) => {
    ctx.logger.debug("egress socks: handshake ended", { error: (error as Error).message });
    socket.destroy();
  });
}

async function serve(ctx: GatewayContext, socket: Socket): Promise<void> {
  const reader = new ByteReader(socket);
  const greeting = await reader.read(2);
  if (greeting[0] !== 0x05) {
    socket.destroy();
    return;
  }
  const methods = await reader.read(greeting[1] ?? 0);
  if (!methods.includes(0x00)) {
    socket.end(Buffer.from([0x05, 0xff]));
    return;
  }
  socket.write(Buffer.from([0x05, 0x00]));
  const request = await reader.read(4);
  if (request[0] !== 0x05) {
    socket.destroy();
    return;
  }
  const command = request[1];
  let host: string;
  switch (request[3]) {
    case 0x01:
      host = formatIp({ family: 4, value: BigInt((await reader.read(4)).readUInt32BE(0)) });
      break;
    case 0x04:
      host = formatIp({ family: 6, value: BigInt(`0x${(await reader.read(16)).toString("hex")}`) });
      break;
    case 0x03: {
      const length = (await reader.read(1))[0] ?? 0;
      host = (await reader.read(length)).toString("latin1");
      break;
    }
    default:
      socket.end(reply(SOCKS_REPLY.addressTypeNotSupported));
      return;
  }
  const port = (await reader.read(2)).readUInt16BE(0);
  if (command !== 0x01) {
    socket.end(reply(SOCKS_REPLY.commandNotSupported));
    return;
  }
  const result = await dial(ctx, "socks", host, port, "tunnel");
  if (!result.ok) {
    socket.end(reply(failureCode(result)));
    return;
  }
  if (socket.destroyed) {
    result.socket.destroy();
    result.entry.finish();
    return;
  }
  socket.setTimeout(0);
  socket.write(reply(SOCKS_REPLY.succeeded));
  result.relay?.join(socket, reader.detach());
}
