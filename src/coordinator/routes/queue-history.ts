/** GET /api/queues/history (API token): each queue's last hour, or another window, in buckets. */
import type { FastifyInstance } from "fastify";
import { QueueHistoryQuery } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { QueueHistoryService } from "../services/queue-history.ts";
import { parse } from "./executor-api.ts";

export function registerQueueHistoryRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const history = new QueueHistoryService(ctx.store.jobs, ctx.clock);
  app.register(async (api) => {
    api.addHook("onRequest", async (request) => {
      ctx.auth.requireApi(request);
    });
    api.get("/api/queues/history", async (request) => history.history(parse(QueueHistoryQuery, request.query, "invalid query")));
  });
}
