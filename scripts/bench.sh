#!/bin/sh
# Runs the benchmarks (all, or those named): each bench/<name>.bench.ts prints a table with the
# peer or bare-substrate figure beside ours, as a ratio. Setup as for the tests.
#   scripts/bench.sh [spine docker bwrap batch ...]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh test >&2
export PATH="$root/.tools/node_modules/.bin:$PATH"
state=$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench-services.XXXXXX")
export AIRLOCK_TEST_ENV="$state/env" AIRLOCK_TEST_STATE="$state"
: >"$AIRLOCK_TEST_ENV"
stop_services() {
  for part in scripts/setup.d/*.sh; do [ -e "$part" ] && sh "$part" stop || true; done
  rm -rf "$state"
}
trap stop_services EXIT INT TERM
for part in scripts/setup.d/*.sh; do [ -e "$part" ] && sh "$part" start; done
set -a
. "$AIRLOCK_TEST_ENV"
set +a
if [ "$#" -eq 0 ]; then
  set -- $(ls bench/*.bench.ts | sed 's#bench/##; s#\.bench\.ts##')
fi
for name in "$@"; do
  printf '\n## %s\n\n' "$name"
  node "bench/$name.bench.ts"
done
