#!/bin/sh
# mmdebstrap hook for the airlock-dind image's root filesystem ($1): runsc registered with dockerd.
set -eu
dir=$1
mkdir -p "$dir/etc/docker" "$dir/run/airlock-dind"
# --network=none: steps have no network (and runsc refuses to start without it on some hosts);
# --host-uds=open: a step may reach its egress gateway's unix socket bound into the container.
cat >"$dir/etc/docker/daemon.json" <<'JSON'
{
  "runtimes": { "runsc": { "path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=open"] } }
}
JSON
rm -rf "$dir/var/cache/apt" "$dir/var/lib/apt/lists" "$dir/var/log"/*.log
