#!/bin/sh
# mmdebstrap hook for the airlock-postgres image's root filesystem ($1): no cluster is made here
# (the entrypoint makes one in the data volume on first start); only the dirs postgres needs.
set -eu
dir=$1
rm -rf "$dir/var/lib/postgresql/15" "$dir/etc/postgresql/15"
mkdir -p "$dir/var/lib/postgresql/data"
chroot "$dir" chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data
chmod 700 "$dir/var/lib/postgresql/data"
rm -rf "$dir/var/cache/apt" "$dir/var/lib/apt/lists" "$dir/var/log"/*.log
