#!/bin/sh
# What deploying in containers needs (docs/deploy.md), and the compose cluster's test.
#   install test   apt-get install mmdebstrap (scripts/images.sh builds the images' Debian root
#                  filesystems with it) and docker-compose (Debian's, 1.29) where missing. The
#                  images themselves are built by the test (cached), not here.
#   install demo   nothing
#   start | stop | start-demo   nothing to start
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
case ${1:-} in
  install)
    [ "${2:-demo}" = test ] || exit 0
    apt_install mmdebstrap docker-compose
    ;;
  start | stop | start-demo) ;;
  *)
    echo "usage: $0 install demo|test | start | stop | start-demo" >&2
    exit 2
    ;;
esac
