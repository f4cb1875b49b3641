#!/usr/bin/env bash
# The project's whole test run: vet, formatting, every test under the race
# detector (storage against MariaDB, routing against Redis), and a bounded
# fuzz run of every parser. MYIM_FUZZTIME sets each fuzz target's budget.
# It is a count of executions (Nx), not a duration: Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" when a
# duration runs out (golang/go#75804); a count never races a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

export MYIM_TEST_MYSQL_DSN="${MYIM_TEST_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/}"
export MYIM_TEST_REDIS_ADDR="${MYIM_TEST_REDIS_ADDR:-127.0.0.1:6379}"
fuzztime="${MYIM_FUZZTIME:-500000x}"

echo "== go vet"
go vet ./...
echo "== go vet (benchmarks module)"
(cd benchmarks && go vet ./...)
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== sizes (no non-test file over 800 lines, no function over 100 lines)"
go run ./internal/tools/sizecheck
echo "== staticcheck (both modules)"
# Pinned, fetched through the Go module proxy on first use and cached after.
staticcheck="honnef.co/go/tools/cmd/staticcheck@v0.8.2"
go run "$staticcheck" ./...
(cd benchmarks && go run "$staticcheck" ./...)
echo "== storage and route link no third-party package (drivers live in storage/bolt, storage/mysql, route/redis)"
linked=$(go list -deps -f '{{if .Module}}{{if not .Module.Main}}{{.ImportPath}}{{end}}{{end}}' ./storage ./route)
if [ -n "$linked" ]; then
  echo "storage or route links: $linked" >&2
  exit 1
fi
echo "== Markdown code fences"
bash ./scripts/lint-md.sh
echo "== packaging (static binaries from an empty directory and environment, systemd unit)"
bash ./scripts/check-packaging.sh
echo "== TypeScript SDK (client/ts: locked dependencies, vectors, bundle budget, browser tests)"
(cd client/ts && npm ci --no-audit --no-fund && npm test)
echo "== reactor footprint (engine links gnet and bytebufferpool only; the example gateway at most 8 MB)"
go test -count=1 -run '^TestReactorFootprint$' -v ./engine | grep -E '^(--- |ok|FAIL)|example gateway'
echo "== go test -race"
go test -race -count=1 -timeout 25m ./...
echo "== scale tests at full size (the race detector slows crypto tenfold)"
go test -count=1 -timeout 10m -run 'TestLargeGroup|TestHoldsIdleConnections' -v ./engine/node ./cmd/myimd | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|members|idle connections'
echo "== fuzz ($fuzztime each)"
# Every Fuzz target in the module, found by name, run for a bounded count.
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | sort | while read -r file; do
  pkg="./$(dirname "${file#./}")"
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]*)' "$file" | awk '{print $2}'); do
    echo "-- $pkg $target"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -timeout=10m "$pkg"
  done
done
echo "== all checks passed"
