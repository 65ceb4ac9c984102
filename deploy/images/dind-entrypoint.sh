#!/bin/sh
# Entrypoint of airlock-dind: prepares its container for a nested dockerd and runs it. The
# container needs SYS_ADMIN and the other capabilities the compose file lists (or privileged),
# seccomp and AppArmor unconfined.
# The daemon listens only on /run/airlock-dind/docker.sock (a volume shared with the executor),
# has no bridge and no iptables rules: steps run with no network, so it needs none.
# Arguments are passed on to dockerd.
set -eu
socket_dir=/run/airlock-dind
mkdir -p "$socket_dir"
# The container's own cgroups are mounted read-only unless it is privileged; the nested
# daemon makes its containers' groups below them (so they stay within this container's limits).
awk '($3 == "cgroup" || $3 == "cgroup2") && index($2, "/sys/fs/cgroup") == 1 { print $2 }' /proc/self/mounts | while read -r dir; do
  mount -o remount,rw,bind "$dir"
done
# cgroup v2: a nested daemon can enable controllers for its containers only once no process
# sits in the root of this container's cgroup, so everything moves to a leaf first.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  while read -r pid; do echo "$pid" >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true; done </sys/fs/cgroup/cgroup.procs
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control || true
fi
# Bind mounts made by the nested daemon need a shared root, and its seccomp/apparmor setup securityfs.
mount --make-rshared / 2>/dev/null || true
[ -d /sys/kernel/security ] && ! mountpoint -q /sys/kernel/security && mount -t securityfs none /sys/kernel/security 2>/dev/null || true
rm -f "$socket_dir/docker.sock" /var/run/docker.pid
exec dockerd --host "unix://$socket_dir/docker.sock" --bridge=none --iptables=false --ip6tables=false --ip-masq=false "$@"
