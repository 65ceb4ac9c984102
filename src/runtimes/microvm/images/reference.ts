/** Image references ("alpine", "airlock-test/busybox:1", "ghcr.io/a/b@sha256:...") and the names they match. */

export interface ImageName {
  /** The reference as the step wrote it. */
  raw: string;
  /** "repo:tag" with Docker Hub's implicit parts spelled out: every spelling that means this image. */
  candidates: string[];
  /** A digest pinned with @, if any. */
  digest?: string | undefined;
}

export function parseImageName(raw: string): ImageName {
  let rest = raw.trim();
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag = "latest";
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const first = rest.split("/")[0] ?? "";
  const hasRegistry = rest.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  const repos = new Set([rest]);
  if (!hasRegistry) {
    repos.add(`docker.io/${rest}`);
    if (!rest.includes("/")) {
      repos.add(`library/${rest}`);
      repos.add(`docker.io/library/${rest}`);
    }
  } else if (first === "docker.io") {
    const short = rest.slice("docker.io/".length);
    repos.add(short);
    if (short.startsWith("library/")) repos.add(short.slice("library/".length));
  }
  return { raw, candidates: [...repos].map((repo) => `${repo}:${tag}`), digest };
}

/** True when an image known by `name` (e.g. an OCI ref annotation) is the one `wanted` refers to. */
export function nameMatches(wanted: ImageName, name: string): boolean {
  const other = parseImageName(name);
  return other.candidates.some((candidate) => wanted.candidates.includes(candidate));
}
