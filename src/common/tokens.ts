/** Secrets Airlock mints: executor and API tokens, per-attempt job tokens. */
import { createHash, randomBytes } from "node:crypto";

/** 256 random bits, URL-safe, with a prefix naming its kind (so a leaked token is recognisable). */
export function newToken(prefix: "aet" | "aat" | "ajt"): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

export function sha256(value: string | Uint8Array): Buffer {
  return createHash("sha256").update(value).digest();
}

export function sha256Hex(value: string | Uint8Array): string {
  return sha256(value).toString("hex");
}
