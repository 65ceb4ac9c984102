/**
 * The test world's hosts, run inside the world's network namespace by world.ts: HTTP on every
 * address given, HTTPS on the public one, each answering with who it is. Paths:
 *   /hello        "hello from <address>:<port>"
 *   /file         FILE_BYTES deterministic bytes (see worldFile)
 *   /bytes/<n>    n bytes of 'x', streamed
 * Prints "ready" on stdout once every listener is up.
 */
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttps } from "node:https";
import { readFileSync } from "node:fs";
import { worldFile } from "./world-file.ts";

interface Config {
  http: { address: string; port: number }[];
  https: { address: string; port: number; cert: string; key: string }[];
}

const config = JSON.parse(readFileSync(process.argv[2] ?? "", "utf8")) as Config;
const file = worldFile();

function handler(label: string) {
  return (request: IncomingMessage, response: ServerResponse): void => {
    const url = request.url ?? "/";
    if (url === "/file") {
      response.writeHead(200, { "content-type": "application/octet-stream", "content-length": file.length });
      response.end(file);
      return;
    }
    const bytes = /^\/bytes\/(\d+)$/.exec(url);
    if (bytes) {
      let left = Number(bytes[1]);
      response.writeHead(200, { "content-type": "application/octet-stream", "content-length": left });
      const chunk = Buffer.alloc(1 << 20, "x");
      const pump = (): void => {
        while (left > 0) {
          const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= piece.length;
          if (!response.write(piece)) {
            response.once("drain", pump);
            return;
          }
        }
        response.end();
      };
      pump();
      return;
    }
    response.writeHead(200, { "content-type": "text/plain" });
    response.end(`hello from ${label}\n`);
  };
}

const listening: Promise<void>[] = [];
for (const item of config.http) {
  const server = createHttp(handler(`${item.address}:${item.port}`));
  listening.push(new Promise((resolve) => server.listen(item.port, item.address, resolve)));
}
for (const item of config.https) {
  const server = createHttps({ cert: readFileSync(item.cert), key: readFileSync(item.key) }, handler(`${item.address}:${item.port} (tls)`));
  listening.push(new Promise((resolve) => server.listen(item.port, item.address, resolve)));
}
await Promise.all(listening);
process.stdout.write("ready\n");
