#!/bin/sh
# Installs what Airlock needs on a Debian machine (run as root) and builds it. Idempotent.
#   scripts/setup.sh [demo|test]   (default: demo; "test" also installs what the tests need)
# Optional parts (sandboxes, databases, browsers) each have a script in scripts/setup.d/,
# called as `<script> install <mode>`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-demo}
cd "$root"
. scripts/lib.sh

apt_install git ca-certificates openssl util-linux procps
node=$(node24 "$root")
export PATH="$(dirname "$node"):$PATH"
say "node $(node --version), npm $(npm --version)"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --silent --no-audit --no-fund
fi
say "building"
npm run --silent build

for part in scripts/setup.d/*.sh; do
  [ -e "$part" ] || continue
  sh "$part" install "$mode"
done
