#!/usr/bin/env bash
# Packaging checks this machine can make: the binaries the Dockerfile builds
# (scripts/build-static.sh: CGO_ENABLED=0) are static, and myimd starts,
# serves and stops cleanly from an empty directory with an empty
# environment, as in a distroless image; the systemd unit passes
# `systemd-analyze verify` where systemd-analyze exists.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

./scripts/build-static.sh "$work/bin"
for b in myimd myimctl; do
  go version -m "$work/bin/$b" | grep -q 'CGO_ENABLED=0' || { echo "$b: not built with CGO_ENABLED=0" >&2; exit 1; }
  env -i "$work/bin/$b" --version
done

mkdir "$work/empty"
cd "$work/empty"
env -i "$work/bin/myimd" --endpoint-addr 127.0.0.1:0 --login-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  --admin-addr 127.0.0.1:0 --center-addr 127.0.0.1:0 --ws-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 200); do
  grep -q '^  data ' "$work/out" && break
  kill -0 "$pid" 2>/dev/null || { echo "myimd exited at start:" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
  sleep 0.1
done
grep -q '^  data ' "$work/out" || { echo "myimd did not start:" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
admin=$(sed -n 's/^  admin *listening on \([^ ]*\).*/\1/p' "$work/out")
env -i "$work/bin/myimctl" --admin "$admin" server info
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || { echo "myimd exited $status after SIGTERM:" >&2; cat "$work/err" >&2; exit 1; }
[ -d "$work/empty/myim-data" ] || { echo "no data directory made" >&2; exit 1; }
cd - >/dev/null

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants the binary the unit names to exist: the one just built.
  mkdir "$work/unit"
  sed "s|/usr/local/bin/myimd|$work/bin/myimd|" deploy/systemd/myimd.service >"$work/unit/myimd.service"
  out=$(systemd-analyze verify "$work/unit/myimd.service" 2>&1 || true)
  if [ -n "$out" ]; then
    echo "systemd-analyze verify deploy/systemd/myimd.service:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "systemd unit verified"
fi
echo "packaging checks passed"
