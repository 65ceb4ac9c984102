/**
 * Who may call what. Executor-wide routes take the shared executor token (`token-executor`),
 * job routes a job token (`Bearer`, one attempt of one job), user routes the API token (`Bearer`).
 */
import type { FastifyRequest } from "fastify";
import { secretsEqual, sha256Hex } from "../../common/tokens.ts";
import { EXECUTOR_AUTH_SCHEME, ForbiddenError, LeaseLostError, UnauthorizedError } from "../../protocol/index.ts";
import type { AttemptRef, Store } from "../../store/index.ts";

function credentials(request: FastifyRequest, scheme: string): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const space = header.indexOf(" ");
  if (space < 0 || header.slice(0, space).toLowerCase() !== scheme.toLowerCase()) return undefined;
  return header.slice(space + 1).trim() || undefined;
}

/** True when `given` is one of `tokens`; every one is compared, so the time taken tells nothing. */
function anyEqual(given: string, tokens: readonly string[]): boolean {
  let found = false;
  for (const token of tokens) found = secretsEqual(given, token) || found;
  return found;
}

export class Auth {
  /** Several of each while a token is rotated; replaced whole by `setTokens` (a reload). */
  private executorTokens: readonly string[];
  private apiTokens: readonly string[];
  private readonly store: Store;

  constructor(options: { executorTokens: readonly string[]; apiTokens: readonly string[]; store: Store }) {
    this.executorTokens = options.executorTokens;
    this.apiTokens = options.apiTokens;
    this.store = options.store;
  }

  setTokens(tokens: { executor: readonly string[]; api: readonly string[] }): void {
    this.executorTokens = tokens.executor;
    this.apiTokens = tokens.api;
  }

  requireExecutor(request: FastifyRequest): void {
    const given = credentials(request, EXECUTOR_AUTH_SCHEME);
    if (!given || !anyEqual(given, this.executorTokens)) {
      throw new UnauthorizedError(`executor routes need "Authorization: ${EXECUTOR_AUTH_SCHEME} <executor token>"`);
    }
  }

  /** True when the request carries the API token (user routes, and reading repositories over git). */
  isApi(request: FastifyRequest): boolean {
    const given = credentials(request, "Bearer");
    return given !== undefined && anyEqual(given, this.apiTokens);
  }

  requireApi(request: FastifyRequest): void {
    const given = credentials(request, "Bearer");
    if (!given || !anyEqual(given, this.apiTokens)) throw new UnauthorizedError('the API needs "Authorization: Bearer <api token>"');
  }

  /** The live attempt behind a job token; the token must be for `jobId` (and `repository`, when given). */
  async requireJob(request: FastifyRequest, scope: { jobId?: number; repository?: string }): Promise<AttemptRef> {
    const given = credentials(request, "Bearer");
    if (!given) throw new UnauthorizedError('job routes need "Authorization: Bearer <job token>"');
    const ref = await this.store.jobs.findAttempt(sha256Hex(given));
    if (!ref) throw new UnauthorizedError("unknown job token");
    if (!ref.live) throw new LeaseLostError(`attempt ${ref.attempt} of job ${ref.jobId} has ended; its token is dead`);
    if (scope.jobId !== undefined && ref.jobId !== scope.jobId) throw new ForbiddenError(`this job token is for job ${ref.jobId}, not job ${scope.jobId}`);
    if (scope.repository !== undefined && ref.repository !== scope.repository) {
      throw new ForbiddenError(`this job token is not valid for repository "${scope.repository}"`);
    }
    return ref;
  }
}
