#!/usr/bin/env bash
# shellcheck disable=SC2016 # the backticks are markdown
# gen-layout-table.sh — print the README's "Layout" table (markdown): each
# lib/ file and the first sentence of its top-of-file comment (what it owns).
# Usage: tools/gen-layout-table.sh [lib-dir]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/lib}

echo '| File | Owns |'
echo '|---|---|'
for f in "$dir"/*.h "$dir"/*.c "$dir"/*.def; do
	[ -e "$f" ] || continue
	# First paragraph of the leading /* ... */ comment, joined into one line,
	# cut after its first sentence; "name — " dropped.
	awk '
		NR == 1 && !/^\/\*/ { exit }
		NR == 1 { next }
		/^ *\*\// || /^ *\*[[:space:]]*$/ { exit }
		{ sub(/^ *\* ?/, ""); text = text (text == "" ? "" : " ") $0 }
		END {
			sub(/^[^ ]+ +(—|--|-) +/, "", text)
			if (match(text, /[.;] /))
				text = substr(text, 1, RSTART)
			gsub(/\|/, "\\|", text)
			print text
		}' "$f" |
	while IFS= read -r owns; do
		printf '| `lib/%s` | %s |\n' "$(basename "$f")" "${owns:-(no top comment)}"
	done
done
