/** Defaults of the docker and gvisor runtimes (kept apart so the registry can name them without loading a client). */
export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
/** The image of steps that name none (overridden by `--default-image`). */
export const DEFAULT_STEP_IMAGE = "alpine:3";
/** The name runsc is registered under in dockerd (overridden by `--gvisor-runtime`). */
export const DEFAULT_GVISOR_RUNTIME = "runsc";
