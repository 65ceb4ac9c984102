/**
 * Who may call what. Executor-wide routes take the shared executor token (`token-executor`),
 * job routes a job token (`Bearer`, one attempt of one job), user routes the API token (`Bearer`).
 */
import { timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { sha256, sha256Hex } from "../../common/tokens.ts";
import { EXECUTOR_AUTH_SCHEME, ForbiddenError, LeaseLostError, UnauthorizedError } from "../../protocol/index.ts";
import type { AttemptRef, Store } from "../../store/index.ts";

function credentials(request: FastifyRequest, scheme: string): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const space = header.indexOf(" ");
  if (space < 0 || header.slice(0, space).toLowerCase() !== scheme.toLowerCase()) return undefined;
  return header.slice(space + 1).trim() || undefined;
}

/**
 * True when `given` is one of the tokens whose sha256 digests are `digests`; every one is compared
 * (digests of equal length, in constant time), so the time taken tells nothing. The configured
 * tokens are hashed once, not on every request.
 */
function anyEqual(given: string, digests: readonly Buffer[]): boolean {
  const hashed = sha256(given);
  let found = false;
  for (const expected of digests) found = timingSafeEqual(hashed, expected) || found;
  return found;
}

/** How many job tokens `Auth` remembers (about 200 bytes each); the oldest is forgotten first. */
const REMEMBERED_TOKENS = 10_000;

/**
 * Job tokens: `requireJob` remembers which attempt a token names (tokens handed out by this
 * coordinator's dequeue, and those it has looked up), so the dozen writes of a job's attempt do
 * not each look the token up in the store. That is safe because the mapping never changes and
 * every store write on behalf of an attempt checks, in its own transaction, that the attempt is
 * still live (store.ts, fencing): a remembered token of an ended attempt gets the same
 * LeaseLostError the lookup would have given. Routes that write nothing for the attempt (git
 * fetches) use `requireLiveJob`, which always asks the store.
 */
export class Auth {
  /** Several of each while a token is rotated; replaced whole by `setTokens` (a reload). */
  private executorTokens: readonly Buffer[];
  private apiTokens: readonly Buffer[];
  private readonly store: Store;
  /** sha256 of a job token -> its attempt; insertion order is age. */
  private readonly attempts = new Map<string, AttemptRef>();

  constructor(options: { executorTokens: readonly string[]; apiTokens: readonly string[]; store: Store }) {
    this.store = options.store;
    this.executorTokens = options.executorTokens.map(sha256);
    this.apiTokens = options.apiTokens.map(sha256);
  }

  setTokens(tokens: { executor: readonly string[]; api: readonly string[] }): void {
    this.executorTokens = tokens.executor.map(sha256);
    this.apiTokens = tokens.api.map(sha256);
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

  /** Notes the attempt a freshly minted job token names, by the token's sha256 (from the dequeue that handed it out). */
  rememberJob(tokenHash: string, ref: AttemptRef): void {
    this.attempts.set(tokenHash, ref);
    if (this.attempts.size > REMEMBERED_TOKENS) this.attempts.delete(this.attempts.keys().next().value as string);
  }

  /** Forgets the job token of this request, or the one given (its attempt just ended here). */
  forgetJob(request: FastifyRequest | string): void {
    const given = typeof request === "string" ? request : credentials(request, "Bearer");
    if (given) this.attempts.delete(sha256Hex(given));
  }

  /**
   * The attempt behind a job token, for a route whose store write checks the attempt is live; the
   * token must be for `jobId`. The token is the request's, or one a dequeue carried in its body.
   */
  async requireJob(request: FastifyRequest | string, scope: { jobId: number }): Promise<AttemptRef> {
    const given = typeof request === "string" ? request : credentials(request, "Bearer");
    if (!given) throw new UnauthorizedError('job routes need "Authorization: Bearer <job token>"');
    const hash = sha256Hex(given);
    let ref = this.attempts.get(hash);
    if (!ref) {
      ref = await this.requireLiveJob(given, {});
      this.rememberJob(hash, { jobId: ref.jobId, attempt: ref.attempt, repository: ref.repository, executorName: ref.executorName });
    }
    if (ref.jobId !== scope.jobId) throw new ForbiddenError(`this job token is for job ${ref.jobId}, not job ${scope.jobId}`);
    return ref;
  }

  /** The live attempt behind a job token, looked up now; the token must be for `jobId` (and `repository`, when given). */
  async requireLiveJob(request: FastifyRequest | string, scope: { jobId?: number; repository?: string }): Promise<AttemptRef> {
    const given = typeof request === "string" ? request : credentials(request, "Bearer");
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
