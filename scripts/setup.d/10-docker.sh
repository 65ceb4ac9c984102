#!/bin/sh
# Docker Engine and gVisor (runsc) for the `docker` and `gvisor` runtimes.
#   install demo|test   apt-get install docker.io and runsc where missing; register runsc (with
#                       --network=none, which runsc needs here, and --host-uds=open, so a step
#                       can reach the egress gateway's unix socket bound into its container) in
#                       /etc/docker/daemon.json, merged with what the file already holds
#   start               start dockerd when `docker info` fails, wait for it, and note in
#                       $AIRLOCK_TEST_STATE that we started it (so `stop` may stop it)
#   stop                stop dockerd, by its pid, only if `start` started it
#   start-demo          like start, but dockerd is left running afterwards
# A dockerd that is already running is shared with others on this machine: it is never stopped;
# if runsc is missing from it, it is sent SIGHUP after daemon.json is written (reloads runtimes).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"

daemon_json=${AIRLOCK_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
runsc_name=${AIRLOCK_GVISOR_RUNTIME:-runsc}
# Debian's docker CLI; another `docker` earlier on PATH may be a newer client without a daemon.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
daemon_answers() { docker_cli info >/dev/null 2>&1; }
runsc_registered() { docker_cli info --format '{{json .Runtimes}}' 2>/dev/null | grep -q "\"$runsc_name\""; }

node_bin() {
  if [ -x "$root/.tools/node_modules/.bin/node" ]; then echo "$root/.tools/node_modules/.bin/node"; else command -v node; fi
}

# Adds runsc to daemon.json, keeping every other setting; prints "changed" when it wrote the file.
register_runsc() {
  runsc_path=$(command -v runsc || echo /usr/bin/runsc)
  mkdir -p "$(dirname "$daemon_json")"
  "$(node_bin)" - "$daemon_json" "$runsc_name" "$runsc_path" <<'EOF'
const fs = require("node:fs");
const [file, name, path] = process.argv.slice(2);
let config = {};
if (fs.existsSync(file)) {
  const text = fs.readFileSync(file, "utf8");
  try {
    config = text.trim() ? JSON.parse(text) : {};
  } catch (error) {
    console.error(`10-docker: ${file} is not valid JSON (${error.message}); fix it, then rerun`);
    process.exit(1);
  }
}
const current = config.runtimes?.[name];
const needed = ["--network=none", "--host-uds=open"];
if (current?.path && needed.every((arg) => (current.runtimeArgs ?? []).includes(arg))) process.exit(0);
config.runtimes = { ...config.runtimes, [name]: { ...current, path: current?.path ?? path, runtimeArgs: [...new Set([...(current?.runtimeArgs ?? []), ...needed])] } };
fs.writeFileSync(`${file}.airlock-tmp`, JSON.stringify(config, null, 2) + "\n");
fs.renameSync(`${file}.airlock-tmp`, file);
console.log("changed");
EOF
}

dockerd_pid() {
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Makes a running dockerd pick up runsc from daemon.json (runtimes reload on SIGHUP); $1 = "changed"
# when daemon.json changed, so a registered runsc's arguments are reloaded too.
reload_runtimes() {
  [ "${1:-}" != changed ] && runsc_registered && return 0
  pid=$(dockerd_pid) || { say "dockerd answers but its pid is unknown; restart it to register $runsc_name"; return 0; }
  say "registering $runsc_name with the running dockerd (SIGHUP $pid)"
  kill -HUP "$pid"
  sleep 0.2
  for _ in $(seq 1 50); do runsc_registered && return 0; sleep 0.1; done
  say "dockerd did not register $runsc_name after SIGHUP; check $daemon_json"
}

# Registers runsc in daemon.json when we may (root, runsc installed); prints "changed" if it wrote.
ensure_runsc_config() {
  [ "$(id -u)" = 0 ] && command -v runsc >/dev/null 2>&1 || return 0
  register_runsc
}

start_daemon() { # $1 = file to record the pid in, or empty
  record=$1
  if daemon_answers; then
    changed=$(ensure_runsc_config)
    [ -n "$changed" ] && say "registered $runsc_name (--network=none --host-uds=open) in $daemon_json"
    if [ "$(id -u)" = 0 ] && command -v runsc >/dev/null 2>&1; then reload_runtimes "$changed"; fi
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    say "dockerd is not installed (scripts/setup.sh installs docker.io); the docker and gvisor runtimes will be skipped"
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    say "dockerd is not running and only root may start it; the docker and gvisor runtimes will be skipped"
    return 0
  fi
  ensure_runsc_config >/dev/null
  log=${AIRLOCK_TEST_STATE:-${TMPDIR:-/tmp}}/dockerd.log
  say "starting dockerd (log: $log)"
  setsid dockerd >"$log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 1 300); do
    daemon_answers && break
    kill -0 "$pid" 2>/dev/null || { say "dockerd exited; see $log"; tail -n 20 "$log" >&2; return 1; }
    sleep 0.1
  done
  daemon_answers || { say "dockerd did not answer within 30 s; see $log"; return 1; }
  [ -n "$record" ] && echo "$pid" >"$record"
  say "dockerd $pid answers"
}

case ${1:-} in
  install)
    apt_install docker.io runsc
    changed=$(ensure_runsc_config)
    [ -n "$changed" ] && say "registered $runsc_name (--network=none --host-uds=open) in $daemon_json"
    if [ "$(id -u)" = 0 ] && daemon_answers; then reload_runtimes "$changed"; fi
    ;;
  start)
    start_daemon "${AIRLOCK_TEST_STATE:+$AIRLOCK_TEST_STATE/dockerd.pid}"
    ;;
  start-demo)
    start_daemon ""
    ;;
  stop)
    file=${AIRLOCK_TEST_STATE:+$AIRLOCK_TEST_STATE/dockerd.pid}
    [ -n "$file" ] && [ -f "$file" ] || exit 0
    pid=$(cat "$file")
    rm -f "$file"
    if kill -0 "$pid" 2>/dev/null; then
      say "stopping dockerd $pid (started by the tests)"
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
      say "dockerd $pid did not stop within 15 s"
    fi
    ;;
  *)
    echo "usage: $0 install demo|test | start | stop | start-demo" >&2
    exit 2
    ;;
esac
