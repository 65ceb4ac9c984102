#!/bin/sh
# QEMU and a guest for the `microvm` runtime.
#   install test   apt-get install qemu-system-x86, linux-image-amd64 (the guest's kernel),
#                  e2fsprogs, busybox-static and musl-tools (to compile the guest agent) where
#                  missing, then build the guest (`airlock executor install microvm`) into
#                  .test-images/microvm-data, where the tests look for it. Nothing is rebuilt
#                  when the kernel, the agent and busybox did not change.
#   install demo   nothing (the demo runs without VMs; `airlock executor install microvm` adds them)
#   start | stop | start-demo   nothing to start: a VM is a process of its job
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"

case ${1:-} in
  install)
    [ "${2:-demo}" = test ] || exit 0
    apt_install qemu-system-x86 linux-image-amd64 e2fsprogs busybox-static musl-tools
    node=$(node24 "$root")
    data=${AIRLOCK_MICROVM_TEST_DATA:-$root/.test-images/microvm-data}
    "$node" "$root/dist/src/cli/main.js" executor install microvm --data "$data" --log-level warn >&2
    ;;
  start | stop | start-demo) ;;
  *)
    echo "usage: $0 install demo|test | start | stop | start-demo" >&2
    exit 2
    ;;
esac
