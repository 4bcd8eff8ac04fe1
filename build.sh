#!/usr/bin/env bash
# Build lowbit and run something, installing the build tools first if this machine lacks them.
#   ./build.sh demo   build, then run the main job on the bundled tiny model
#   ./build.sh test   build, then run every test (ctest), then the fast tests under ASan+UBSan
#   ./build.sh        build only
set -euo pipefail
cd "$(dirname "$0")"

need=()
for tool in cmake make gcc; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "build.sh: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake make gcc libc6-dev >/dev/null
fi

case "${1:-build}" in
  build) make build ;;
  demo) make demo ;;
  test) make test && make asan ;;
  *) echo "usage: ./build.sh [build|demo|test]" >&2; exit 2 ;;
esac
