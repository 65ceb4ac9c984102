#!/bin/sh
# mmdebstrap hook for the airlock image's root filesystem ($1): the airlock user and its dirs.
set -eu
dir=$1
echo 'airlock:x:10001:10001:Airlock:/var/lib/airlock:/usr/sbin/nologin' >>"$dir/etc/passwd"
echo 'airlock:x:10001:' >>"$dir/etc/group"
echo 'airlock:!:19000::::::' >>"$dir/etc/shadow"
# The coordinator's data (user airlock); the executor's (root: it removes files steps made as root).
mkdir -p "$dir/var/lib/airlock" "$dir/var/lib/airlock-executor"
chown 10001:10001 "$dir/var/lib/airlock"
chmod 700 "$dir/var/lib/airlock" "$dir/var/lib/airlock-executor"
rm -rf "$dir/var/cache/apt" "$dir/var/lib/apt/lists" "$dir/var/log"/*.log
