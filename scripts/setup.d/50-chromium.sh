#!/bin/sh
# Headless Chromium for the web UI's browser tests and benchmark (driven by playwright-core,
# which cannot download a browser here: Debian's package is the browser).
#   install test   apt-get install chromium (and a font) where missing
#   install demo   nothing: the UI itself needs no browser on the server
#   start | stop | start-demo   nothing to run
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
case ${1:-} in
  install)
    [ "${2:-demo}" = test ] || exit 0
    apt_install chromium fonts-dejavu-core || say "chromium is missing; the browser tests will be skipped"
    ;;
  start | stop | start-demo) ;;
  *)
    echo "usage: $0 install demo|test | start | stop | start-demo" >&2
    exit 2
    ;;
esac
