/**
 * Reading logs: by byte range, and live as server-sent events.
 *
 * The SSE stream is driven by store change notifications: each change marks the stream dirty,
 * and one pass re-reads the job and sends every byte past the offsets already sent, so a burst of
 * appends costs one pass and nothing is ever sent twice. Reconnecting clients pass the offsets
 * they have (`from=key:offset,...`) and resume there. The stream ends with an `end` event once
 * the job is terminal and everything is sent.
 */
import type { FastifyInstance } from "fastify";
import { TextDecoder } from "node:util";
import { z } from "zod";
import { isTerminal, type LogEvent } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { jobView } from "../views.ts";
import { clientGone, parse } from "./executor-api.ts";

const JobParams = z.object({ id: z.coerce.number().int().positive() });
const ReadQuery = z.object({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(64 * 1024 * 1024).default(8 * 1024 * 1024),
  attempt: z.coerce.number().int().min(1).optional(),
});
const StreamQuery = z.object({ from: z.string().max(4096).optional() });
const SSE_PIECE = 256 * 1024;
const KEEPALIVE_MS = 15_000;

function parseOffsets(from: string | undefined): Map<string, number> {
  const offsets = new Map<string, number>();
  for (const part of from?.split(",") ?? []) {
    const colon = part.lastIndexOf(":");
    const offset = Number(part.slice(colon + 1));
    if (colon > 0 && Number.isInteger(offset) && offset >= 0) offsets.set(part.slice(0, colon), offset);
  }
  return offsets;
}

export function registerLogRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const { store, jobs } = ctx;

  app.register(async (api) => {
    api.addHook("onRequest", async (request) => {
      ctx.auth.requireApi(request);
    });

    api.get("/api/jobs/:id/logs", async (request) => {
      const detail = await jobs.detail(parse(JobParams, request.params, "invalid path").id);
      return { attempt: detail.job.attempt, entries: jobView(detail).entries };
    });

    api.get("/api/jobs/:id/logs/:key", async (request, reply) => {
      const { id } = parse(JobParams, request.params, "invalid path");
      const key = String((request.params as Record<string, string>).key);
      const query = parse(ReadQuery, request.query, "invalid query");
      const detail = await jobs.detail(id);
      const attempt = query.attempt ?? detail.job.attempt;
      const data = await store.outputs.readLog(id, attempt, key, query.offset, query.limit);
      const entry = detail.entries.find((candidate) => candidate.key === key);
      return reply
        .header("content-type", "application/octet-stream")
        .header("x-entry-size", String(attempt === detail.job.attempt ? (entry?.size ?? 0) : data.byteLength + query.offset))
        .send(Buffer.from(data));
    });

    api.get("/api/jobs/:id/events", async (request, reply) => {
      const { id } = parse(JobParams, request.params, "invalid path");
      const { from } = parse(StreamQuery, request.query, "invalid query");
      let detail = await jobs.detail(id);
      const signal = clientGone(reply, ctx.shutdown);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      const send = (event: string, data: unknown): void => {
        raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };

      let attempt = detail.job.attempt;
      let offsets = parseOffsets(from);
      let decoders = new Map<string, TextDecoder>();
      let lastSignature = "";
      let dirty = true;
      let wake: () => void = () => undefined;
      const unsubscribe = store.onChange((change) => {
        if (change.kind === "job" && change.jobId === id) {
          dirty = true;
          wake();
        }
      });
      signal.addEventListener("abort", () => wake(), { once: true });

      try {
        while (!signal.aborted) {
          if (dirty) {
            dirty = false;
            detail = await jobs.detail(id);
            if (detail.job.attempt !== attempt) {
              attempt = detail.job.attempt;
              offsets = new Map();
              decoders = new Map();
              send("attempt", { attempt });
            }
            const view = jobView(detail);
            const signature = JSON.stringify({ ...view, entries: view.entries.map((entry) => ({ ...entry, size: 0 })), steps: [] });
            if (signature !== lastSignature) {
              lastSignature = signature;
              send("job", view);
            }
            for (const entry of detail.entries) {
              let offset = offsets.get(entry.key) ?? 0;
              while (offset < entry.size && !signal.aborted) {
                const data = await store.outputs.readLog(id, attempt, entry.key, offset, SSE_PIECE);
                if (data.byteLength === 0) break;
                const decoder = decoders.get(entry.key) ?? new TextDecoder("utf-8");
                decoders.set(entry.key, decoder);
                const event: LogEvent = { key: entry.key, offset, end: offset + data.byteLength, text: decoder.decode(data, { stream: true }) };
                send("log", event);
                offset += data.byteLength;
              }
              offsets.set(entry.key, offset);
            }
            if (isTerminal(detail.job.state)) {
              send("end", { state: detail.job.state });
              break;
            }
          }
          if (!dirty) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(() => {
                raw.write(": keepalive\n\n");
                // Re-read now and then: a change announced by another coordinator can be lost
                // (it died between committing and announcing).
                dirty = true;
                resolve();
              }, KEEPALIVE_MS);
              wake = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            wake = () => undefined;
          }
        }
      } catch (error) {
        ctx.logger.warn("event stream ended with an error", { jobId: id, error: String(error) });
      } finally {
        unsubscribe();
        raw.end();
      }
    });
  });
}
