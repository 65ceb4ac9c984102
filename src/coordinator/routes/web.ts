/**
 * The web UI: the files `npm run build` puts in web/dist (index.html and content-hashed assets),
 * read once at start, held in memory (gzipped too), and served at `/` and at each of the UI's
 * own routes (which all get index.html; the page routes itself). Every response carries headers
 * that keep the page to its own origin: a CSP with no inline script or style, no framing, no
 * referrer. The coordinator never imports web/ code, and runs without a build: `/` then says how
 * to make one.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { NotFoundError } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";

/** Paths the UI's router handles; keep in step with web/src/router.ts. */
export const UI_ROUTES = ["/", "/jobs", "/jobs/:id", "/batches", "/batches/:name", "/indexes", "/executors", "/queues"] as const;

export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "content-security-policy": [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
});

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

interface StaticFile {
  body: Buffer;
  gzipped: Buffer | undefined;
  type: string;
  etag: string;
  /** Names with a content hash never change: cache them for good. */
  immutable: boolean;
}

/** The package's own web/dist: the first ancestor of this module holding a package.json. */
export function defaultWebDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 8; depth += 1) {
    if (existsSync(join(dir, "package.json"))) return join(dir, "web", "dist");
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return join(process.cwd(), "web", "dist");
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? walk(path) : entry.isFile() ? [path] : [];
  });
}

function loadFiles(dir: string): Map<string, StaticFile> | undefined {
  if (!existsSync(join(dir, "index.html")) || !statSync(dir).isDirectory()) return undefined;
  const files = new Map<string, StaticFile>();
  for (const path of walk(dir)) {
    const body = readFileSync(path);
    const type = TYPES[extname(path)] ?? "application/octet-stream";
    const compressible = type.startsWith("text/") || type.includes("json") || type.includes("svg");
    const gzipped = compressible && body.length > 1024 ? gzipSync(body) : undefined;
    const name = `/${relative(dir, path).split(sep).join("/")}`;
    files.set(name, {
      body,
      gzipped: gzipped && gzipped.length < body.length ? gzipped : undefined,
      type,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
      immutable: /[.-][A-Z0-9]{8,}\.[a-z]+$/.test(name),
    });
  }
  return files;
}

function send(request: FastifyRequest, reply: FastifyReply, file: StaticFile): FastifyReply {
  void reply
    .headers(SECURITY_HEADERS)
    .header("content-type", file.type)
    .header("etag", file.etag)
    .header("vary", "accept-encoding")
    .header("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  if (request.headers["if-none-match"] === file.etag) return reply.status(304).send();
  const gzip = file.gzipped && /\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""));
  if (gzip) void reply.header("content-encoding", "gzip");
  return reply.send(gzip ? file.gzipped : file.body);
}

function notBuilt(dir: string): string {
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8"><title>Airlock</title></head><body>',
    "<h1>Airlock</h1>",
    "<p>The coordinator is running, but its web UI is not built, so there is nothing to show here.</p>",
    `<p>Looked for <code>${escapeHtml(join(dir, "index.html"))}</code>. Build it with <code>npm run build</code>, `,
    "or point <code>--web-dir</code> (<code>AIRLOCK_WEB_DIR</code>) at a built UI, then restart the coordinator.</p>",
    "<p>The API under <code>/api</code> and the <code>airlock</code> command work without it.</p>",
    "</body></html>",
  ].join("\n");
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

export function registerWebRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const dir = ctx.config.webDir ?? defaultWebDir();
  const files = loadFiles(dir);
  if (!files) {
    ctx.logger.warn("web UI not built; / explains how to build it", { webDir: dir });
    for (const route of UI_ROUTES) {
      app.get(route, async (_request, reply) => reply.status(503).headers(SECURITY_HEADERS).header("content-type", "text/html; charset=utf-8").send(notBuilt(dir)));
    }
    return;
  }
  ctx.logger.info("serving the web UI", { webDir: dir, files: files.size });
  const index = files.get("/index.html") as StaticFile;
  for (const route of UI_ROUTES) app.get(route, async (request, reply) => send(request, reply, index));
  app.get("/assets/*", async (request, reply) => {
    const path = request.url.split("?")[0] ?? "";
    let name = path;
    try {
      name = decodeURIComponent(path);
    } catch {
      // a malformed escape names no file
    }
    const file = files.get(name);
    if (!file) throw new NotFoundError(`no UI file ${path}`);
    return send(request, reply, file);
  });
}
