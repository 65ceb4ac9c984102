# The airlock image: coordinator (`server`, the default) or executor (`executor run ...`).
# Built by scripts/images.sh, FROM a Debian root filesystem it makes with mmdebstrap.
ARG BASE
FROM ${BASE}
COPY opt/airlock /opt/airlock
COPY node /usr/local/bin/node
COPY healthcheck.sh /usr/local/bin/airlock-healthcheck
ENV PATH=/opt/airlock/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    AIRLOCK_LISTEN=0.0.0.0:7780 \
    AIRLOCK_DATA=/var/lib/airlock \
    AIRLOCK_EXECUTOR_DATA=/var/lib/airlock-executor
# The coordinator runs unprivileged; executors are run as root (`--user 0`), see docs/deploy.md.
USER 10001:10001
WORKDIR /var/lib/airlock
EXPOSE 7780
# Coordinator: GET /healthz answers. Executor: its last heartbeat was accepted within a minute.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["/usr/local/bin/airlock-healthcheck"]
# tini reaps zombies (git, compilers) and passes SIGTERM on: both commands stop gracefully on it.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/airlock/bin/airlock"]
CMD ["server"]
