/** The one place where anything thrown in a request becomes an HTTP status and body. */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "../../common/logger.ts";
import { AirlockError, PayloadTooLargeError, toErrorBody, ValidationError } from "../../protocol/index.ts";

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message: string;
}

export function toAirlockError(error: unknown): AirlockError {
  if (error instanceof AirlockError) return error;
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
  if (airlockError.status >= 500) {
    logger.error("request failed", { method: request.method, url: request.url, error: String(error), stack: (error as Error)?.stack });
  }
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  void reply.status(airlockError.status).send(toErrorBody(airlockError));
}
