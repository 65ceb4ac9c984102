#!/bin/sh
# HEALTHCHECK of the airlock image; reads what the container runs from PID 1's command line.
#   server     GET /healthz on the port it listens on (--listen, AIRLOCK_LISTEN), over loopback
#   executor   <data>/heartbeat (--data, AIRLOCK_EXECUTOR_DATA) was rewritten within
#              AIRLOCK_HEALTH_MAX_AGE seconds (default 60): the executor's loop runs and a
#              coordinator accepted its last heartbeat
set -eu
args=$(tr '\0' '\n' </proc/1/cmdline)
flag() { # name -> the value of --name X or --name=X on PID 1's command line
  printf '%s\n' "$args" | awk -v name="--$1" '
    found { print; exit } $0 == name { found = 1 } index($0, name "=") == 1 { print substr($0, length(name) + 2); exit }'
}
mode=$(printf '%s\n' "$args" | grep -m1 -x -E 'server|executor' || true)
case $mode in
  server)
    listen=$(flag listen)
    listen=${listen:-${AIRLOCK_LISTEN:-127.0.0.1:7780}}
    port=${listen##*:}
    scheme=http
    [ -z "$(flag tls-cert)${AIRLOCK_TLS_CERT:-}" ] || scheme=https
    # The coordinator's own certificate need not name 127.0.0.1: this probe does not check it.
    NODE_TLS_REJECT_UNAUTHORIZED=0 exec node -e '
      fetch(process.argv[1], { signal: AbortSignal.timeout(4000) }).then(
        (response) => process.exit(response.ok ? 0 : 1),
        (error) => { console.error(`${process.argv[1]}: ${error.cause?.message ?? error.message}`); process.exit(1); });' \
      "$scheme://127.0.0.1:$port/healthz"
    ;;
  executor)
    data=$(flag data)
    data=${data:-${AIRLOCK_EXECUTOR_DATA:-.airlock-executor}}
    case $data in /*) ;; *) data=$(readlink /proc/1/cwd)/$data ;; esac
    file=$data/heartbeat
    [ -f "$file" ] || { echo "no $file yet: no heartbeat was accepted" >&2; exit 1; }
    age=$(($(date +%s) - $(stat -c %Y "$file")))
    [ "$age" -le "${AIRLOCK_HEALTH_MAX_AGE:-60}" ] || { echo "last accepted heartbeat $age s ago ($(cat "$file"))" >&2; exit 1; }
    ;;
  *)
    echo "PID 1 runs neither \`airlock server\` nor \`airlock executor\`: nothing to check" >&2
    ;;
esac
