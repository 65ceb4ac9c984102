/**
 * Git smart HTTP, read-only, served by real git (`git upload-pack --stateless-rpc`).
 * A job token opens only its own job's repository, and only while its attempt is live. The API
 * token (the user's) may read any registered repository: `airlock batch run --local` fetches
 * each repository of a batch through here, as an executor would; it can never push either.
 */
import { spawn } from "node:child_process";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { gitEnv } from "../../common/exec.ts";
import { ForbiddenError, NotFoundError, RepositoryName, ValidationError } from "../../protocol/index.ts";
import type { CoordinatorContext } from "../context.ts";

const PREFIX = "/.executors/git/";
const UPLOAD_PACK_CONFIG = ["-c", "uploadpack.allowFilter=true", "-c", "uploadpack.allowAnySHA1InWant=true"];

function pktLine(text: string): string {
  return `${(text.length + 4).toString(16).padStart(4, "0")}${text}`;
}

function splitPath(wildcard: string, suffix: string): string {
  if (!wildcard.endsWith(suffix)) throw new NotFoundError("only info/refs and git-upload-pack are served");
  const name = wildcard.slice(0, -suffix.length).replace(/\.git$/, "");
  const parsed = RepositoryName.safeParse(name);
  if (!parsed.success) throw new ValidationError(`"${name}" is not a repository name`);
  return parsed.data;
}

/** git passes protocol v2 negotiation in the Git-Protocol header; forward it only if well-formed. */
function gitProtocol(request: FastifyRequest): Record<string, string> {
  const header = request.headers["git-protocol"];
  return typeof header === "string" && /^[A-Za-z0-9=:.,_-]{1,256}$/.test(header) ? { GIT_PROTOCOL: header } : {};
}

export function registerGitRoutes(app: FastifyInstance, ctx: CoordinatorContext): void {
  const serve = async (request: FastifyRequest, reply: FastifyReply, repository: string, advertise: boolean): Promise<void> => {
    const ref = ctx.auth.isApi(request) ? undefined : await ctx.auth.requireLiveJob(request, { repository });
    // Ref advertisement comes first in every fetch: make sure the job's commit is in the mirror then.
    // (A user's fetch names commits the coordinator resolved from this mirror, so they are in it.)
    const commit = advertise && ref ? (await ctx.store.jobs.getJob(ref.jobId))?.job.commit : undefined;
    const mirror = commit ? await ctx.repositories.ensureCommit(repository, commit) : await ctx.repositories.ensureMirror(repository);
    const cached = advertise ? undefined : ctx.packCache?.uploadPackOptions(mirror);
    const env = { ...gitEnv(ctx.config.hostEnv), ...gitProtocol(request), ...cached?.env };
    const args = [...UPLOAD_PACK_CONFIG, ...(cached?.config ?? []), "upload-pack", "--stateless-rpc", ...(advertise ? ["--advertise-refs"] : []), mirror];
    const child = spawn("git", args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8").slice(0, 4096);
    });
    child.on("close", (code) => {
      if (code !== 0) ctx.logger.warn("git upload-pack failed", { repository, code, stderr: stderr.trim() });
      if (cached) ctx.packCache?.prune();
    });
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "content-type": advertise ? "application/x-git-upload-pack-advertisement" : "application/x-git-upload-pack-result",
      "cache-control": "no-cache",
    });
    if (advertise && !env.GIT_PROTOCOL?.includes("version=2")) raw.write(`${pktLine("# service=git-upload-pack\n")}0000`);
    if (advertise) {
      child.stdin.end();
    } else {
      const body = request.body as NodeJS.ReadableStream;
      const gzipped = String(request.headers["content-encoding"] ?? "").includes("gzip");
      if (gzipped) pipeline(body, createGunzip(), child.stdin, () => undefined);
      else pipeline(body, child.stdin, () => undefined);
    }
    child.stdin.on("error", () => undefined);
    pipeline(child.stdout, raw, () => undefined);
    raw.on("close", () => child.kill("SIGKILL"));
  };

  app.register(async (git) => {
    git.addContentTypeParser("application/x-git-upload-pack-request", (_request, payload, done) => {
      done(null, payload);
    });

    git.get(`${PREFIX}*`, async (request, reply) => {
      const wildcard = (request.params as Record<string, string>)["*"] ?? "";
      const repository = splitPath(wildcard, "/info/refs");
      const service = (request.query as Record<string, string | undefined>).service;
      if (service !== "git-upload-pack") throw new ForbiddenError("only git-upload-pack (fetch) is served; pushing is not allowed");
      await serve(request, reply, repository, true);
    });

    git.post(`${PREFIX}*`, async (request, reply) => {
      const wildcard = (request.params as Record<string, string>)["*"] ?? "";
      if (wildcard.endsWith("/git-receive-pack")) throw new ForbiddenError("pushing is not allowed");
      const repository = splitPath(wildcard, "/git-upload-pack");
      await serve(request, reply, repository, false);
    });
  });
}
