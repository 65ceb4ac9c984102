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

export class Auth {
  private readonly executorToken: string;
  private readonly apiToken: string;
  private readonly store: Store;

  constructor(options: { executorToken: string; apiToken: string; store: Store }) {
    this.executorToken = options.executorToken;
    this.apiToken = options.apiToken;
    this.store = options.store;
  }

  requireExecutor(request: FastifyRequest): void {
    const given = credentials(request, EXECUTOR_AUTH_SCHEME);
    if (!given || !secretsEqual(given, this.executorToken)) {
      throw new UnauthorizedError(`executor routes need "Authorization: ${EXECUTOR_AUTH_SCHEME} <executor token>"`);
    }
  }

  /** True when the request carries the API token (user routes, and reading repositories over git). */
  isApi(request: FastifyRequest): boolean {
    const given = credentials(request, "Bearer");
    return given !== undefined && secretsEqual(given, this.apiToken);
  }

  requireApi(request: FastifyRequest): void {
    const given = credentials(request, "Bearer");
    if (!given || !secretsEqual(given, this.apiToken)) throw new UnauthorizedError('the API needs "Authorization: Bearer <api token>"');
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
