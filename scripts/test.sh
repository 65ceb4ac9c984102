#!/bin/sh
# The test command: installs and starts everything the tests need, then runs lint, typecheck
# and every test. Prints the test runner's summary; exits non-zero if anything failed.
#   scripts/test.sh [test files...]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh test
. scripts/lib.sh
export PATH="$root/.tools/node_modules/.bin:$PATH"

# Services for the tests (dockerd, a throwaway Postgres...): each setup.d part may start one and
# append KEY=VALUE lines for the tests to $AIRLOCK_TEST_ENV; `stop` runs when the tests end.
state=$(mktemp -d "${TMPDIR:-/tmp}/airlock-test-services.XXXXXX")
export AIRLOCK_TEST_ENV="$state/env" AIRLOCK_TEST_STATE="$state"
: >"$AIRLOCK_TEST_ENV"
stop_services() {
  for part in scripts/setup.d/*.sh; do
    [ -e "$part" ] && sh "$part" stop || true
  done
  rm -rf "$state"
}
trap stop_services EXIT INT TERM
for part in scripts/setup.d/*.sh; do
  [ -e "$part" ] || continue
  sh "$part" start
done
set -a
. "$AIRLOCK_TEST_ENV"
set +a

status=0
say "lint"
npm run --silent lint || status=1
say "typecheck"
npm run --silent typecheck || status=1
say "tests"
if [ "$#" -gt 0 ]; then
  node --test --test-concurrency=2 "$@" || status=1
else
  node --test --test-concurrency=2 'test/**/*.test.ts' || status=1
fi
exit $status
