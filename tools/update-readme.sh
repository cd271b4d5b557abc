#!/usr/bin/env bash
# update-readme.sh — regenerate the generated tables in README.md (settings,
# counters, layout, ctl) between their <!-- BEGIN generated: X --> and
# <!-- END generated: X --> markers, from the lists they describe.
# Usage: tools/update-readme.sh          rewrite README.md in place
#        tools/update-readme.sh --check  exit 1 if README.md is stale (ctest docs.readme)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readme=$root/README.md
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp".*' EXIT

cp "$readme" "$tmp"
for part in settings counters layout ctl; do
	"$root/tools/gen-$part-table.sh" >"$tmp.table"
	for m in BEGIN END; do
		if ! grep -qx "<!-- $m generated: $part -->" "$tmp"; then
			echo "update-readme: README.md lacks the line '<!-- $m generated: $part -->'" >&2
			exit 1
		fi
	done
	awk -v part="$part" -v table="$tmp.table" '
		$0 == "<!-- BEGIN generated: " part " -->" {
			print; while ((getline line < table) > 0) print line; skip = 1; next
		}
		$0 == "<!-- END generated: " part " -->" { skip = 0 }
		!skip { print }' "$tmp" >"$tmp.new"
	mv "$tmp.new" "$tmp"
done

if [ "${1:-}" = --check ]; then
	if ! diff -u "$readme" "$tmp"; then
		echo "README.md is stale: run tools/update-readme.sh and commit README.md" >&2
		exit 1
	fi
	echo "README.md tables are up to date"
else
	cp "$tmp" "$readme"
fi
