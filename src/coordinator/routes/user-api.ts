/** The user API under /api (API token): jobs, executors, queues, repositories. */
import type { FastifyInstance } from "fastify";
import { Readable } from "node:stream";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { AddRepositoryRequest, ArtifactName, ListJobsQuery, NotFoundError, ValidationError } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";
import { executorView, jobSummary, queueView } from "../views.ts";
import { parse } from "./executor-api.ts";

const JobParams = z.object({ id: z.coerce.number().int().positive() });

export function registerUserRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const { store, clock, jobs, config } = ctx;

  app.register(async (api) => {
    api.addHook("onRequest", async (request) => {
      ctx.auth.requireApi(request);
    });
    // Job specs may also be posted as YAML, as users write them.
    api.addContentTypeParser(["application/yaml", "application/x-yaml", "text/yaml"], { parseAs: "string", bodyLimit: config.maxBodyBytes }, (_request, body, done) => {
      try {
        done(null, parseYaml(String(body)));
      } catch (error) {
        done(new ValidationError(`body is not valid YAML: ${(error as Error).message}`), undefined);
      }
    });

    api.post("/api/jobs", async (request, reply) => {
      if (request.body === undefined || request.body === null) throw new ValidationError("the body must be a job spec (JSON or YAML)");
      return reply.status(201).send(await jobs.submit(request.body));
    });

    api.get("/api/jobs", async (request) => {
      const query = parse(ListJobsQuery, request.query, "invalid query");
      return { jobs: (await store.jobs.listJobs(query)).map(jobSummary) };
    });

    api.get("/api/jobs/:id", async (request) => jobs.view(parse(JobParams, request.params, "invalid path").id));

    api.post("/api/jobs/:id/cancel", async (request) => jobs.cancel(parse(JobParams, request.params, "invalid path").id));

    api.get("/api/jobs/:id/artifacts", async (request) => {
      const detail = await jobs.detail(parse(JobParams, request.params, "invalid path").id);
      return { artifacts: (await jobs.view(detail.job.id)).artifacts };
    });

    api.get("/api/jobs/:id/artifacts/*", async (request, reply) => {
      const { id } = parse(JobParams, request.params, "invalid path");
      const name = parse(ArtifactName, (request.params as Record<string, string>)["*"], "invalid artifact name");
      await jobs.detail(id);
      const artifact = await store.outputs.readArtifact(id, name);
      if (!artifact) throw new NotFoundError(`job ${id} has no artifact "${name}"`);
      void reply
        .header("content-type", name === "diff" ? "text/x-diff; charset=utf-8" : "application/octet-stream")
        .header("content-length", artifact.record.size)
        .header("x-content-sha256", artifact.record.sha256)
        .header("content-disposition", `attachment; filename="${name.split("/").pop() ?? "artifact"}"`);
      return reply.send(ReadableFrom(artifact.chunks));
    });

    api.get("/api/executors", async () => {
      const now = clock.now();
      const aliveWindow = config.leaseMs;
      return { executors: (await store.jobs.listExecutors()).map((executor) => executorView(executor, now, aliveWindow)) };
    });

    api.get("/api/queues", async () => {
      const now = clock.now();
      return { queues: (await store.jobs.queueStats()).map((queue) => queueView(queue, now)) };
    });

    api.post("/api/repositories", async (request, reply) => {
      const body = parse(AddRepositoryRequest, request.body, "invalid repository");
      const record = await ctx.repositories.add(body.name, body.source);
      return reply.status(201).send({ ...record, createdAt: new Date(record.createdAt).toISOString() });
    });

    api.get("/api/repositories", async () => ({
      repositories: (await ctx.repositories.list()).map((repo) => ({ ...repo, createdAt: new Date(repo.createdAt).toISOString() })),
    }));
  });
}

function ReadableFrom(chunks: AsyncIterable<Uint8Array>): NodeJS.ReadableStream {
  return Readable.from(chunks, { objectMode: false });
}
