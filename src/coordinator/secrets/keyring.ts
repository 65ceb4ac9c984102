/**
 * Sealing job secrets at rest: AES-256-GCM (node:crypto) under an operator key read from a file.
 * Each value gets its own random 96-bit nonce; the key's id (a fingerprint, not the key) is stored
 * beside the ciphertext, so a rotation can tell which key sealed what, and a value sealed under
 * another key is refused by name instead of decrypting to garbage. The secret's name is the
 * additional data: a sealed value copied onto another name does not open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { AirlockError, ValidationError } from "../../protocol/index.ts";
import type { SealedSecret } from "../../store/index.ts";

/** The key id of values stored unencrypted (a coordinator run with --allow-plaintext-secrets). */
export const PLAINTEXT_KEY_ID = "plaintext";

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export interface SecretKey {
  id: string;
  /** Where it was read from, for messages. */
  path: string;
  bytes: Buffer;
}

/** Reads a 256-bit key: 32 raw bytes, or 64 hex characters, or base64 of 32 bytes. Refuses a file others can read. */
export function readSecretKeyFile(path: string, what = "--secrets-key-file"): SecretKey {
  let stats;
  try {
    stats = statSync(path);
  } catch (error) {
    throw new ValidationError(`${what}: cannot read ${path}: ${(error as Error).message}`, { field: "secretsKeyFile" });
  }
  if (!stats.isFile()) throw new ValidationError(`${what}: ${path} is not a regular file`, { field: "secretsKeyFile" });
  if ((stats.mode & 0o077) !== 0) {
    const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
    throw new ValidationError(`${what}: ${path} is readable or writable by group or others (mode ${mode}); a secrets key must be private: chmod 600 ${path}`, { field: "secretsKeyFile" });
  }
  const raw = readFileSync(path);
  const bytes = decodeKey(raw);
  if (!bytes) {
    throw new ValidationError(`${what}: ${path} must hold a 256-bit key: 32 raw bytes, 64 hex characters, or base64 of 32 bytes (e.g. \`openssl rand -base64 32\`)`, { field: "secretsKeyFile" });
  }
  return { id: keyId(bytes), path, bytes };
}

function decodeKey(raw: Buffer): Buffer | undefined {
  if (raw.length === KEY_BYTES) return Buffer.from(raw);
  const text = raw.toString("latin1").trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const decoded = Buffer.from(text, text.includes("-") || text.includes("_") ? "base64url" : "base64");
    if (decoded.length === KEY_BYTES) return decoded;
  }
  return undefined;
}

/** A short public fingerprint of a key (SHA-256 under a label, 16 hex characters). */
export function keyId(bytes: Buffer): string {
  return createHash("sha256").update("airlock secrets key id\0").update(bytes).digest("hex").slice(0, 16);
}

function additionalData(name: string): Buffer {
  return Buffer.from(`airlock job secret v1\0${name}`, "utf8");
}

export function seal(key: SecretKey, name: string, value: string): SealedSecret {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.bytes, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(name));
  const ciphertext = Buffer.concat([cipher.update(value, "utf8"), cipher.final(), cipher.getAuthTag()]);
  return { name, keyId: key.id, nonce, ciphertext };
}

/** A value stored as it is, for a coordinator allowed to keep secrets unencrypted. */
export function plaintext(name: string, value: string): SealedSecret {
  return { name, keyId: PLAINTEXT_KEY_ID, nonce: new Uint8Array(0), ciphertext: Buffer.from(value, "utf8") };
}

/** Opens a sealed value with whichever of `keys` sealed it (plaintext values need none). */
export function open(keys: readonly SecretKey[], sealed: SealedSecret): string {
  if (sealed.keyId === PLAINTEXT_KEY_ID) return Buffer.from(sealed.ciphertext).toString("utf8");
  const key = keys.find((candidate) => candidate.id === sealed.keyId);
  if (!key) {
    const known = keys.map((candidate) => candidate.id).join(", ") || "none";
    throw new SecretKeyError(`secret "${sealed.name}" was sealed with key ${sealed.keyId}, which this coordinator does not have (its keys: ${known})`);
  }
  const data = Buffer.from(sealed.ciphertext);
  if (data.length < TAG_BYTES) throw new SecretKeyError(`secret "${sealed.name}" is damaged (too short)`);
  const decipher = createDecipheriv("aes-256-gcm", key.bytes, Buffer.from(sealed.nonce), { authTagLength: TAG_BYTES });
  decipher.setAAD(additionalData(sealed.name));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(data.subarray(0, data.length - TAG_BYTES)), decipher.final()]).toString("utf8");
  } catch (error) {
    throw new SecretKeyError(`secret "${sealed.name}" does not open with key ${key.id}: it was altered or sealed differently`, { cause: error });
  }
}

/** A stored secret that cannot be opened (unknown key, altered ciphertext). */
export class SecretKeyError extends AirlockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("internal", message, options);
  }
}
