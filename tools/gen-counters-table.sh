#!/usr/bin/env bash
# shellcheck disable=SC2016 # the backticks are markdown
# gen-counters-table.sh — print the README's "Counters" table (markdown)
# from include/spbmalloc_counters.def, the one list of event counters.
# A one-line /* comment */ in the list becomes a group row.
# Usage: tools/gen-counters-table.sh [path/to/spbmalloc_counters.def]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
def=${1:-$root/include/spbmalloc_counters.def}

echo '| Counter | Meaning |'
echo '|---|---|'
# SPB_COUNTER(ENUM, "name", "meaning"), and group comments /* ... */ on one line.
sed -nE \
	-e 's/^[[:space:]]*SPB_COUNTER\([[:space:]]*[A-Za-z0-9_]+[[:space:]]*,[[:space:]]*"([^"]*)"[[:space:]]*,[[:space:]]*"(.*)"[[:space:]]*\)[[:space:]]*$/C\t\1\t\2/p' \
	-e 's/^\/\*[[:space:]]*([^*]*[^*[:space:]])[[:space:]]*\*\/[[:space:]]*$/G\t\1/p' "$def" |
while IFS=$'\t' read -r kind name meaning; do
	if [ "$kind" = G ]; then
		printf '| ***%s*** | |\n' "$name"
	else
		meaning=${meaning//|/\\|}
		printf '| `%s` | %s |\n' "$name" "$meaning"
	fi
done
