/** The batch API under /api/batches (API token); the list of routes is in src/protocol/batch.ts. */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { BatchName, PreviewRequest, RetryRequest } from "../../protocol/batch.ts";
import { RepositoryName, ValidationError } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { parse } from "./executor-api.ts";

const NameParams = z.object({ name: BatchName });
const VersionQuery = z.object({ version: z.coerce.number().int().positive().optional() });
const EntryQuery = VersionQuery.extend({ repository: RepositoryName.optional(), workspace: z.string().min(1).max(1024).optional() });
/** Uploads carry every entry's diff and log: a larger limit than other bodies. */
const UPLOAD_LIMIT = 512 * 1024 * 1024;

export function registerBatchRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const { batches, batchApply } = ctx;

  app.register(async (api) => {
    api.addHook("onRequest", async (request) => {
      ctx.auth.requireApi(request);
    });
    const specText = (body: unknown): string => {
      if (typeof body === "string") return body;
      return parse(PreviewRequest, body, "invalid batch request").spec;
    };
    // A spec may also be posted as its YAML text, as users write it.
    api.addContentTypeParser(["application/yaml", "application/x-yaml", "text/yaml"], { parseAs: "string", bodyLimit: ctx.config.maxBodyBytes }, (_request, body, done) => {
      done(null, String(body));
    });

    api.post("/api/batches", async (request, reply) => {
      if (request.body === undefined || request.body === null) throw new ValidationError('the body must be {"spec": "<batch spec YAML>"} or the YAML itself');
      return reply.status(201).send(await batches.preview(specText(request.body)));
    });

    api.post("/api/batches/resolve", async (request) => batches.resolve(specText(request.body)));

    api.post("/api/batches/upload", { bodyLimit: Math.max(UPLOAD_LIMIT, ctx.config.maxBodyBytes) }, async (request, reply) => reply.status(201).send(await batches.upload(request.body)));

    api.get("/api/batches", async () => ({ batches: await batches.list() }));

    api.get("/api/batches/:name", async (request) => {
      const { name } = parse(NameParams, request.params, "invalid path");
      return batches.view(name, parse(VersionQuery, request.query, "invalid query").version);
    });

    api.get("/api/batches/:name/diff", async (request, reply) => {
      const { name } = parse(NameParams, request.params, "invalid path");
      const text = await batches.diff(name, parse(EntryQuery, request.query, "invalid query"));
      return reply.header("content-type", "text/x-diff; charset=utf-8").send(text);
    });

    api.get("/api/batches/:name/logs", async (request, reply) => {
      const { name } = parse(NameParams, request.params, "invalid path");
      const query = parse(EntryQuery, request.query, "invalid query");
      if (query.repository === undefined) throw new ValidationError("name the repository (?repository=R)", { field: "repository" });
      return reply.header("content-type", "text/plain; charset=utf-8").send(await batches.logs(name, query));
    });

    api.post("/api/batches/:name/retry", async (request) => {
      const { name } = parse(NameParams, request.params, "invalid path");
      return batches.retry(name, parse(RetryRequest, request.body ?? {}, "invalid retry request").failed);
    });

    api.post("/api/batches/:name/cancel", async (request) => batches.cancel(parse(NameParams, request.params, "invalid path").name));

    api.post("/api/batches/:name/apply", async (request) => batchApply.apply(parse(NameParams, request.params, "invalid path").name, request.body));
  });
}
