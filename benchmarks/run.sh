#!/usr/bin/env bash
# Runs MyIM and its peers side by side and prints the markdown table.
# Flags go to the compare command: bash benchmarks/run.sh --rounds 5 --only p2p,ping
set -euo pipefail
cd "$(dirname "$0")"
exec go run ./cmd/compare "$@"
