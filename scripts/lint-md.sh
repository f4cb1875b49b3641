#!/usr/bin/env bash
# Markdown lint: every code fence (``` or ~~~) in the repository's Markdown
# files is closed, by a fence of the same character at least as long, so
# that no page renders half as code.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.md' 2>/dev/null || find . -name '*.md' -not -path './.git/*')
[ -n "$files" ] || exit 0
# shellcheck disable=SC2086
awk '
function report() { if (open) { printf "%s:%d: code fence never closed\n", name, oline; bad = 1 } }
FNR == 1 { report(); open = 0; name = FILENAME }
match($0, /^[ \t]*(```+|~~~+)/) {
  f = substr($0, RSTART, RLENGTH); gsub(/[ \t]/, "", f)
  if (!open) { open = 1; ch = substr(f, 1, 1); len = length(f); oline = FNR }
  else if (substr(f, 1, 1) == ch && length(f) >= len && $0 ~ /^[ \t]*(`+|~+)[ \t]*$/) { open = 0 }
}
END { report(); exit bad }
' $files
