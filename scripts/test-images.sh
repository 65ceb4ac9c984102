#!/bin/sh
# Builds the images the tests (and the demo) run steps in, from Debian's static busybox; no
# registry is needed. For each image it writes a root filesystem, an OCI image layout and an OCI
# archive under $out, and imports it into the local Docker daemon when one answers.
#   airlock-test/busybox   busybox; /etc/airlock-image says "busybox"
#   airlock-test/tools     busybox; /etc/airlock-image says "tools"; has /usr/local/bin/airlock-tool
# Usage: scripts/test-images.sh OUT_DIR
set -eu
out=${1:?usage: test-images.sh OUT_DIR}
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

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  for name in busybox tools; do
    build_rootfs "$name" "$out/$name/rootfs"
    build_oci "$name" "$out/$name/rootfs" "$out/$name/oci"
    tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$out/$name/oci" -cf "$out/$name/oci.tar" .
  done
  echo "$want" >"$stamp"
fi

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  for name in busybox tools; do
    if ! docker image inspect "airlock-test/$name:latest" >/dev/null 2>&1; then
      tar -C "$out/$name/rootfs" -c . | docker import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "airlock-test/$name:latest" >/dev/null
    fi
  done
fi
