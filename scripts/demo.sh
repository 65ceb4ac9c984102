#!/bin/sh
# Installs what the demo needs, then runs `airlock demo` (pass --once to exit after the samples).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" demo
for part in "$root"/scripts/setup.d/*.sh; do
  [ -e "$part" ] && sh "$part" start-demo
done
exec "$root/bin/airlock" demo "$@"
