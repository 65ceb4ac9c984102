#!/bin/sh
# Installs what the demo needs, then runs `airlock demo` (pass --once to exit after the samples).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" demo
for part in "$root"/scripts/setup.d/*.sh; do
  [ -e "$part" ] && sh "$part" start-demo
done
# The sample jobs' images, for runtimes that read OCI layouts (bwrap) rather than a daemon.
export AIRLOCK_IMAGES="${AIRLOCK_IMAGES:-$root/.test-images}"
exec "$root/bin/airlock" demo "$@"
