#!/usr/bin/env bash
# shellcheck disable=SC2016 # the backticks are markdown
# gen-ctl-table.sh — print the README's "Run-time control" table (markdown)
# from lib/ctl.def, the one list of spb_ctl names (and lib/options.def for
# what each setting means and its range).
# Usage: tools/gen-ctl-table.sh [path/to/ctl.def [path/to/options.def]]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
def=${1:-$root/lib/ctl.def}
opts=${2:-$root/lib/options.def}

echo '| Name | Kind | Access | What it is; when a write takes effect |'
echo '|---|---|---|---|'
# SPB_OPTION(ENUM, "ENV_SUFFIX", default, min, max, "meaning") -> ENUM \t ENV \t min \t max
optinfo=$(sed -nE 's/^[[:space:]]*SPB_OPTION\([[:space:]]*([A-Za-z0-9_]+)[[:space:]]*,[[:space:]]*"([^"]*)"[[:space:]]*,[[:space:]]*([^,]+),[[:space:]]*([^,]+),[[:space:]]*([^,]+),.*$/\1\t\2\t\4\t\5/p' "$opts")
# SPB_CTL_OPT(ENUM, "name", writable, "why")
sed -nE 's/^[[:space:]]*SPB_CTL_OPT\([[:space:]]*([A-Za-z0-9_]+)[[:space:]]*,[[:space:]]*"([^"]*)"[[:space:]]*,[[:space:]]*([01])[[:space:]]*,[[:space:]]*"(.*)"[[:space:]]*\)[[:space:]]*$/\1\t\2\t\3\t\4/p' "$def" |
while IFS=$'\t' read -r enum name writable why; do
	line=$(printf '%s\n' "$optinfo" | awk -F'\t' -v e="$enum" '$1 == e')
	if [ -z "$line" ]; then
		echo "gen-ctl-table: $enum is not in $opts" >&2
		exit 1
	fi
	IFS=$'\t' read -r _ env min max <<<"$line"
	access='read'
	[ "$writable" = 1 ] && access="read, write ${min// /}–${max// /}"
	why=${why//|/\\|}
	printf '| `%s` | setting `SPBMALLOC_%s` | %s | %s |\n' "$name" "$env" "$access" "$why"
done
# SPB_CTL_FIG(ENUM, "name", "meaning") and SPB_CTL_ACT(ENUM, "name", "meaning")
sed -nE 's/^[[:space:]]*SPB_CTL_FIG\([[:space:]]*[A-Za-z0-9_]+[[:space:]]*,[[:space:]]*"([^"]*)"[[:space:]]*,[[:space:]]*"(.*)"[[:space:]]*\)[[:space:]]*$/\1\t\2/p' "$def" |
while IFS=$'\t' read -r name meaning; do
	printf '| `%s` | engine figure | read | %s |\n' "$name" "${meaning//|/\\|}"
done
printf '| `stats.<counter>` | counter | read | every counter of the Counters table (`stats.malloc_alloc`, ...), summed over threads and zones like `spb_counter_value` |\n'
sed -nE 's/^[[:space:]]*SPB_CTL_ACT\([[:space:]]*[A-Za-z0-9_]+[[:space:]]*,[[:space:]]*"([^"]*)"[[:space:]]*,[[:space:]]*"(.*)"[[:space:]]*\)[[:space:]]*$/\1\t\2/p' "$def" |
while IFS=$'\t' read -r name meaning; do
	printf '| `%s` | action | run (no value) | %s |\n' "$name" "${meaning//|/\\|}"
done
