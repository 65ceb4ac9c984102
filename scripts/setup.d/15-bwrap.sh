#!/bin/sh
# bubblewrap for the `bwrap` runtime (namespace sandboxes; no daemon to start).
#   install demo|test   apt-get install bubblewrap where missing; for tests also a C compiler
#                       and static libc, which build the seccomp test helper
#   start|stop|start-demo   nothing to do
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
case ${1:-} in
  install)
    apt_install bubblewrap
    [ "${2:-demo}" = test ] && apt_install gcc libc6-dev
    if ! bwrap --unshare-user --unshare-pid --unshare-net --ro-bind / / true 2>/dev/null; then
      say "bwrap is installed but cannot create namespaces here; 'airlock executor validate' says why"
    fi
    ;;
  start | stop | start-demo) ;;
  *)
    echo "usage: $0 install demo|test | start | stop | start-demo" >&2
    exit 2
    ;;
esac
