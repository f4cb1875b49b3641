#!/usr/bin/env bash
# Builds the release binaries as the Dockerfile does: static (CGO_ENABLED=0,
# so that they run on distroless or scratch with no libc), trimmed paths,
# no symbol table, the version linked in. Usage: scripts/build-static.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: build-static.sh OUTDIR}"
version="${MYIM_VERSION:-$(sed -n 's/^## \[\([0-9][^]]*\)\].*/\1/p' CHANGELOG.md | head -1)}"
mkdir -p "$out"
for cmd in myimd myimctl; do
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/myim/myim/internal/buildinfo.Version=${version:-devel}" \
    -o "$out/$cmd" "./cmd/$cmd"
done
