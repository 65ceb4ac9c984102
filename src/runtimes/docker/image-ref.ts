/**
 * Image references as users write them ("alpine", "ghcr.io/acme/tool:1.2", "repo@sha256:..."),
 * split the way the Engine's pull call wants them, and the registry credentials that apply.
 */
export interface ImageRef {
  /** Everything before the tag or digest: what `fromImage` takes. */
  repository: string;
  /** The tag, or the digest ("sha256:..."); "latest" when none is given. */
  tag: string;
  /** The registry host ("docker.io" for Docker Hub names). */
  registry: string;
}

export function parseImageRef(image: string): ImageRef {
  let repository = image;
  let tag = "latest";
  const at = image.indexOf("@");
  if (at >= 0) {
    repository = image.slice(0, at);
    tag = image.slice(at + 1);
  } else {
    const colon = image.lastIndexOf(":");
    if (colon > image.lastIndexOf("/")) {
      repository = image.slice(0, colon);
      tag = image.slice(colon + 1);
    }
  }
  const first = repository.split("/")[0] ?? "";
  const hasRegistry = repository.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost");
  return { repository, tag, registry: hasRegistry ? first : "docker.io" };
}

const DOCKER_HUB_ALIASES = ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"];

/**
 * The X-Registry-Auth header for pulling `ref`, from the job's `registryAuth` (keyed by registry
 * host, with or without a scheme), or undefined when the job gave none for that registry.
 */
export function registryAuthHeader(ref: ImageRef, auth: Record<string, { username: string; password: string }> | undefined): string | undefined {
  if (!auth) return undefined;
  const wanted = ref.registry === "docker.io" ? DOCKER_HUB_ALIASES : [ref.registry];
  for (const [key, credentials] of Object.entries(auth)) {
    const host = key.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
    if (wanted.includes(key) || wanted.includes(host)) {
      const serveraddress = ref.registry === "docker.io" ? "https://index.docker.io/v1/" : ref.registry;
      // URL-safe base64 *with* padding: the Engine decodes with Go's base64.URLEncoding, which needs it.
      const json = JSON.stringify({ username: credentials.username, password: credentials.password, serveraddress });
      return Buffer.from(json).toString("base64").replace(/\+/g, "-").replace(/\//g, "_");
    }
  }
  return undefined;
}
