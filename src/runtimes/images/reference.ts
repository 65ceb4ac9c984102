/**
 * Image references as steps write them. Three forms:
 *   NAME[:TAG][@sha256:DIGEST]    looked up in the configured OCI images, then in Docker
 *   oci:PATH[:REF]                 an OCI image layout directory (skopeo's syntax)
 *   oci-archive:PATH[:REF]         a tar of an OCI image layout
 * Names are normalized the way Docker shows them: "busybox" and "docker.io/library/busybox:latest"
 * are the same image, "busybox:latest".
 */
import { ValidationError } from "../../protocol/index.ts";

export type ImageReference =
  | { kind: "name"; name: string; digest?: string | undefined }
  | { kind: "oci" | "oci-archive"; path: string; ref?: string | undefined };

const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** "docker.io/library/busybox" -> "busybox:latest"; "ghcr.io/a/b:1" stays. Undefined when not a name. */
export function normalizeName(input: string): { name: string; digest?: string | undefined } | undefined {
  let rest = input.trim();
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return undefined;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return undefined;
  }
  rest = rest.toLowerCase() === rest ? rest : "";
  if (!NAME.test(rest)) return undefined;
  for (const prefix of ["docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"]) {
    if (rest.startsWith(prefix) && rest.length > prefix.length) {
      rest = rest.slice(prefix.length);
      break;
    }
  }
  if (!tag && digest) return { name: rest, digest };
  return { name: `${rest}:${tag ?? "latest"}`, digest };
}

/** True for an annotation value that is a whole reference ("alpine:3.19"), not a bare tag ("3.19"). */
export function isFullReference(value: string): boolean {
  return value.includes("/") || (value.includes(":") && !value.startsWith(":"));
}

export function parseImageReference(input: string): ImageReference {
  const text = input.trim();
  for (const kind of ["oci-archive", "oci"] as const) {
    if (!text.startsWith(`${kind}:`)) continue;
    const body = text.slice(kind.length + 1);
    if (!body.startsWith("/")) throw new ValidationError(`image "${input}": the path after ${kind}: must be absolute`);
    // skopeo's form: the reference follows the last colon, unless that colon is part of the path.
    const colon = body.lastIndexOf(":");
    if (colon > 0 && !body.slice(colon + 1).includes("/")) return { kind, path: body.slice(0, colon), ref: body.slice(colon + 1) || undefined };
    return { kind, path: body };
  }
  const parsed = normalizeName(text);
  if (!parsed) throw new ValidationError(`image "${input}" is not an image reference (NAME[:TAG], oci:PATH[:REF] or oci-archive:PATH[:REF])`);
  return { kind: "name", ...parsed };
}
