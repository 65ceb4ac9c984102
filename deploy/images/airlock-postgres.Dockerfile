# PostgreSQL 15 from Debian for the compose cluster: a cluster made in the data volume on first
# start, with a password user (AIRLOCK_POSTGRES_USER / _PASSWORD / _DB) reachable over the network.
ARG BASE
FROM ${BASE}
COPY postgres-entrypoint.sh /usr/local/bin/airlock-postgres
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    PGHOST=/var/lib/postgresql/socket
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=5 CMD ["pg_isready", "--quiet"]
# SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for every client to leave).
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/airlock-postgres"]
