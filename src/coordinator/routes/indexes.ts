/** The index API under /api/indexes and /api/index-policies, and repository sync (API token); the routes are listed in src/protocol/indexing.ts. */
import type { FastifyInstance } from "fastify";
import { Readable } from "node:stream";
import { z } from "zod";
import { RepositoryName } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { parse } from "./executor-api.ts";

const IdParams = z.object({ id: z.coerce.number().int().positive() });
const ListQuery = z.object({
  repository: RepositoryName.optional(),
  commit: z.string().min(1).max(256).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
const PolicyQuery = z.object({ repository: RepositoryName.optional() });

export function registerIndexRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const { indexes, indexPolicies } = ctx;
  app.register(async (api) => {
    api.addHook("onRequest", async (request) => {
      ctx.auth.requireApi(request);
    });

    api.post("/api/indexes", async (request, reply) => {
      const plan = await indexes.plan(request.body ?? {});
      return reply.status(plan.entries.some((entry) => entry.action === "queued") ? 201 : 200).send(plan);
    });

    api.get("/api/indexes", async (request) => ({ indexes: await indexes.list(parse(ListQuery, request.query, "invalid query")) }));

    api.get("/api/index-policies", async (request) => ({ policies: await indexPolicies.list(parse(PolicyQuery, request.query, "invalid query").repository) }));

    api.put("/api/index-policies", async (request) => indexPolicies.set(request.body ?? {}));

    api.post("/api/repositories/sync", async (request) => indexPolicies.sync(request.body ?? {}));

    api.get("/api/indexes/:id", async (request) => indexes.view(parse(IdParams, request.params, "invalid path").id));

    api.get("/api/indexes/:id/file", async (request, reply) => {
      const { id } = parse(IdParams, request.params, "invalid path");
      const { record, chunks } = await indexes.file(id);
      return reply
        .header("content-type", "application/octet-stream")
        .header("content-length", String(record.size))
        .header("content-disposition", `attachment; filename="index-${id}.scip"`)
        .send(Readable.from(chunks));
    });
  });
}
