/** Builds the coordinator's HTTP app: parsers, error mapping, and every route module. */
import { readFileSync } from "node:fs";
import Fastify, { type FastifyInstance } from "fastify";
import { NotFoundError } from "../protocol/index.ts";
import type { CoordinatorContext } from "./context.ts";
import { sendError } from "./http/errors.ts";
import { registerBatchRoutes } from "./routes/batches.ts";
import { registerIndexRoutes } from "./routes/indexes.ts";
import { registerExecutorRoutes } from "./routes/executor-api.ts";
import { registerGitRoutes } from "./routes/git.ts";
import { registerLogRoutes } from "./routes/logs.ts";
import { registerQueueHistoryRoutes } from "./routes/queue-history.ts";
import { registerUserRoutes } from "./routes/user-api.ts";
import { registerWebRoutes } from "./routes/web.ts";

export function buildApp(ctx: CoordinatorContext): FastifyInstance {
  const tls = ctx.config.tls;
  const app = Fastify({
    logger: false,
    bodyLimit: ctx.config.maxBodyBytes,
    // Long polls and log streams hold requests open; the dequeue wait is bounded separately.
    requestTimeout: 0,
    keepAliveTimeout: 65_000,
    forceCloseConnections: true,
    ...(tls ? { https: { cert: readFileSync(tls.certPath), key: readFileSync(tls.keyPath) } } : {}),
  }) as unknown as FastifyInstance;

  app.setErrorHandler((error, request, reply) => sendError(error, request, reply, ctx.logger));
  app.setNotFoundHandler((request, reply) => sendError(new NotFoundError(`no route ${request.method} ${request.url.split("?")[0]}`), request, reply, ctx.logger));

  app.get("/healthz", async () => ({ ok: true }));
  app.get("/metrics", async (_request, reply) => {
    return reply.header("content-type", ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });

  registerExecutorRoutes(app, ctx);
  registerGitRoutes(app, ctx);
  registerUserRoutes(app, ctx);
  registerBatchRoutes(app, ctx);
  registerIndexRoutes(app, ctx);
  registerLogRoutes(app, ctx);
  registerQueueHistoryRoutes(app, ctx);
  registerWebRoutes(app, ctx);
  return app;
}
