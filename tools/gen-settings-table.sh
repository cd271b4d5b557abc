#!/usr/bin/env bash
# shellcheck disable=SC2016 # the backticks are markdown
# gen-settings-table.sh — print the README's "Settings" table (markdown)
# from lib/options.def, the one list of SPBMALLOC_* settings.
# Usage: tools/gen-settings-table.sh [path/to/options.def]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
def=${1:-$root/lib/options.def}

echo '| Variable | Default | Range | Meaning |'
echo '|---|---|---|---|'
# SPB_OPTION(ENUM, "ENV_SUFFIX", default, min, max, "meaning")
sed -nE 's/^[[:space:]]*SPB_OPTION\([[:space:]]*[A-Za-z0-9_]+[[:space:]]*,[[:space:]]*"([^"]*)"[[:space:]]*,[[:space:]]*([^,]+),[[:space:]]*([^,]+),[[:space:]]*([^,]+),[[:space:]]*"(.*)"[[:space:]]*\)[[:space:]]*$/\1\t\2\t\3\t\4\t\5/p' "$def" |
while IFS=$'\t' read -r env dflt min max meaning; do
	meaning=${meaning//|/\\|}
	printf '| `SPBMALLOC_%s` | %s | %s–%s | %s |\n' "$env" "${dflt// /}" "${min// /}" "${max// /}" "$meaning"
done
