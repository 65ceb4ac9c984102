/**
 * The typed errors every part of Airlock throws, their wire form, and their HTTP status (mapped
 * here and nowhere else). Anything thrown that is not an AirlockError is an internal error (500).
 */
import { z } from "zod";

export const ERROR_CODES = {
  validation: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  lease_lost: 409,
  incompatible_protocol: 409,
  payload_too_large: 413,
  sandbox: 500,
  step_failed: 500,
  internal: 500,
  unavailable: 503,
  insufficient_storage: 507,
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export class AirlockError extends Error {
  readonly code: ErrorCode;
  /** The request field at fault, dotted ("steps.0.commands"), when there is one. */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; field?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.field = options?.field;
  }

  get status(): number {
    return ERROR_CODES[this.code];
  }
}

export class ValidationError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown; field?: string }) {
    super("validation", message, options);
  }
}

export class UnauthorizedError extends AirlockError {
  constructor(message = "missing or invalid credentials") {
    super("unauthorized", message);
  }
}

export class ForbiddenError extends AirlockError {
  constructor(message: string) {
    super("forbidden", message);
  }
}

export class NotFoundError extends AirlockError {
  constructor(message: string) {
    super("not_found", message);
  }
}

export class ConflictError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("conflict", message, options);
  }
}

/** The attempt this caller holds has ended or been reset: it may write nothing more. */
export class LeaseLostError extends AirlockError {
  constructor(message = "this attempt no longer holds the job's lease") {
    super("lease_lost", message);
  }
}

/** An executor and a coordinator that speak no common executor protocol (version.ts). */
export class IncompatibleProtocolError extends AirlockError {
  constructor(message: string) {
    super("incompatible_protocol", message);
  }
}

export class PayloadTooLargeError extends AirlockError {
  constructor(message: string) {
    super("payload_too_large", message);
  }
}

export class UnavailableError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("unavailable", message, options);
  }
}

/** The server's disk is full: the request stored nothing; it may succeed once space is freed. */
export class InsufficientStorageError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("insufficient_storage", message, options);
  }
}

/** A sandbox could not be built or broke: infrastructure, so the attempt is retried. */
export class SandboxError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("sandbox", message, options);
  }
}

/** A step of the job exited non-zero or hit one of its limits: the job's own fault, final. */
export class StepFailedError extends AirlockError {
  readonly stepKey: string;
  readonly exitCode: number | undefined;

  constructor(stepKey: string, exitCode: number | undefined, message: string) {
    super("step_failed", message);
    this.stepKey = stepKey;
    this.exitCode = exitCode;
  }
}

export const ErrorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    field: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export function toErrorBody(error: AirlockError): ErrorBody {
  return { error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) } };
}

/** Rebuilds the typed error a server sent, so clients can `instanceof` it. */
export function fromErrorBody(status: number, body: unknown): AirlockError {
  const parsed = ErrorBody.safeParse(body);
  if (!parsed.success) return new AirlockError(status === 503 ? "unavailable" : "internal", `HTTP ${status}`);
  const { code, message, field } = parsed.data.error;
  switch (code) {
    case "validation":
      return new ValidationError(message, field ? { field } : undefined);
    case "unauthorized":
      return new UnauthorizedError(message);
    case "forbidden":
      return new ForbiddenError(message);
    case "not_found":
      return new NotFoundError(message);
    case "conflict":
      return new ConflictError(message);
    case "lease_lost":
      return new LeaseLostError(message);
    case "incompatible_protocol":
      return new IncompatibleProtocolError(message);
    case "payload_too_large":
      return new PayloadTooLargeError(message);
    case "unavailable":
      return new UnavailableError(message);
    case "insufficient_storage":
      return new InsufficientStorageError(message);
    default:
      return new AirlockError("internal", message);
  }
}

/** Normalizes anything thrown into an Error (never a string). */
export function coerceError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === "string" ? value : JSON.stringify(value));
}

/** Formats a zod error as "field: message; field: message". */
export function describeZodError(error: z.ZodError): { message: string; field: string | undefined } {
  const issues = error.issues.slice(0, 5).map((issue) => {
    const field = issue.path.map(String).join(".");
    return { field, text: field ? `${field}: ${issue.message}` : issue.message };
  });
  return { message: issues.map((issue) => issue.text).join("; "), field: issues[0]?.field || undefined };
}

export function validationErrorFrom(error: z.ZodError, prefix?: string): ValidationError {
  const { message, field } = describeZodError(error);
  return new ValidationError(prefix ? `${prefix}: ${message}` : message, field ? { field } : undefined);
}
