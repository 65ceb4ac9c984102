# The Docker-in-Docker sidecar of an executor: dockerd (runsc registered) on a unix socket in
# /run/airlock-dind, a volume the executor mounts too. Runs privileged, as root.
ARG BASE
FROM ${BASE}
COPY dind-entrypoint.sh /usr/local/bin/airlock-dind
ENV DOCKER_HOST=unix:///run/airlock-dind/docker.sock
VOLUME /var/lib/docker
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["docker", "version", "--format", "{{.Server.Version}}"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/airlock-dind"]
