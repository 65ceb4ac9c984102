/** Secrets Airlock mints: executor and API tokens, per-attempt job tokens. */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** 256 random bits, URL-safe, with a prefix naming its kind (so a leaked token is recognisable). */
export function newToken(prefix: "aet" | "aat" | "ajt"): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

export function sha256Hex(value: string | Uint8Array): string {
  return createHash("sha256").update(value).digest("hex");
}

/** Constant-time comparison of two secrets (hashing first equalizes their lengths). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(createHash("sha256").update(given).digest(), createHash("sha256").update(expected).digest());
}
