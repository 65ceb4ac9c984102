/** The one place where anything thrown in a request becomes an HTTP status and body. */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "../../common/logger.ts";
import { AirlockError, InsufficientStorageError, PayloadTooLargeError, toErrorBody, ValidationError } from "../../protocol/index.ts";

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message: string;
}

/** SQLite's SQLITE_FULL (primary result code 13), ENOSPC from a file write, Postgres' disk_full, git's "No space left". */
function diskFullReason(error: unknown): string | undefined {
  const candidate = error as { code?: unknown; errcode?: unknown; errstr?: unknown; message?: unknown } | undefined;
  if (candidate?.code === "ERR_SQLITE_ERROR" && typeof candidate.errcode === "number" && (candidate.errcode & 0xff) === 13) return `SQLite: ${typeof candidate.errstr === "string" ? candidate.errstr : "database or disk is full"}`;
  if (candidate?.code === "ENOSPC") return "no space left on device";
  if (candidate?.code === "53100") return `Postgres: ${String(candidate.message)}`;
  if (typeof candidate?.message === "string" && /No space left on device/.test(candidate.message)) return "no space left on device";
  return undefined;
}

export function toAirlockError(error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
  const full = diskFullReason(error) ?? diskFullReason((error as { cause?: unknown } | undefined)?.cause);
  if (full) return new InsufficientStorageError(`the coordinator's disk is full (${full}): nothing was stored; writes succeed again once space is freed in its data dir`, { cause: error });
  const candidate = error as FastifyLikeError;
  const status = typeof candidate?.statusCode === "number" ? candidate.statusCode : 500;
  if (status === 413) return new PayloadTooLargeError("request body is larger than this endpoint accepts");
  if (status === 415) return new ValidationError(`unsupported content type: ${candidate.message}`);
  if (candidate?.code === "FST_ERR_CTP_INVALID_JSON_BODY" || candidate instanceof SyntaxError) {
    return new ValidationError(`body is not valid JSON: ${candidate.message}`);
  }
  if (status >= 400 && status < 500) return new ValidationError(candidate.message);
  return new AirlockError("internal", "internal error", { cause: error });
}

export function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger: Logger): void {
  const airlockError = toAirlockError(error);
  if (airlockError.code === "unavailable" || airlockError.code === "insufficient_storage") {
    // A state of the machine (database down, disk full), not a bug: one line, no stack.
    logger.warn("request refused", { method: request.method, url: request.url, error: airlockError.message });
  } else if (airlockError.status >= 500) {
    logger.error("request failed", { method: request.method, url: request.url, error: String(error), stack: (error as Error)?.stack });
  }
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  void reply.status(airlockError.status).send(toErrorBody(airlockError));
}
