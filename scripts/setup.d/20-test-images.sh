#!/bin/sh
# Step images for the tests and the demo (see scripts/test-images.sh), in .test-images/.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
case ${1:-} in
  install)
    apt_install busybox-static
    # airlock-test/net copies the host's curl and CA certificates.
    [ "${2:-}" != test ] || apt_install curl ca-certificates
    # airlock-test/python-indexer copies Debian's Python and pip.
    [ "${2:-}" != test ] || apt_install python3 python3-pip python3-setuptools python3-wheel
    "$root/scripts/test-images.sh" "$root/.test-images"
    ;;
  start | start-demo)
    # Re-run once the daemons are up, so Docker gets the images too.
    "$root/scripts/test-images.sh" "$root/.test-images"
    [ -z "${AIRLOCK_TEST_ENV:-}" ] || echo "AIRLOCK_TEST_IMAGES=$root/.test-images" >>"$AIRLOCK_TEST_ENV"
    ;;
esac
