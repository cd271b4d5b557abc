#!/bin/sh
# coverage.sh — huge-page coverage and RSS of a 4 GiB working set built from
# 2 MiB allocations (issue 2's target: spbmalloc coverage >= 0.95 with RSS
# <= 1.02 x glibc), for each allocator, interleaved, with repetitions.
#
#   benchmarks/engine/coverage.sh [-b BUILD_DIR] [-r REPS] [-m MIB] [-o RAW_FILE]
#
# Rows: glibc, jemalloc, tcmalloc, mimalloc and spbmalloc run
# bench_engine_malloc (plain malloc) under LD_PRELOAD of each library
# (spbmalloc = the build's libspbmalloc.so, which serves malloc once its
# malloc layer exists); spb_pages runs bench_engine in its spb_pages mode
# (the engine directly). A library that is not installed is skipped with a
# note. One process at a time: each holds the whole working set.
set -eu
build=build
reps=3
mib=4096
raw=
while getopts b:r:m:o: o; do
	case $o in
	b) build=$OPTARG ;;
	r) reps=$OPTARG ;;
	m) mib=$OPTARG ;;
	o) raw=$OPTARG ;;
	*) echo "usage: $0 [-b BUILD_DIR] [-r REPS] [-m MIB] [-o RAW_FILE]" >&2; exit 2 ;;
	esac
done
malloc_bin=$build/benchmarks/bench_engine_malloc
engine_bin=$build/benchmarks/bench_engine
spb_so=$build/lib/libspbmalloc.so
for f in "$malloc_bin" "$engine_bin"; do
	[ -x "$f" ] || { echo "coverage.sh: $f not built (cmake --build $build)" >&2; exit 1; }
done

libpath() { # the path of a shared library known to the dynamic linker
	ldconfig -p | awk -v n="$1" '$1 == n && /x86-64/ { print $NF; exit }'
}
jemalloc=$(libpath libjemalloc.so.2)
tcmalloc=$(libpath libtcmalloc.so.4)
mimalloc=$(libpath libmimalloc.so.2)

if [ -f "$spb_so" ] && command -v nm >/dev/null &&
   ! nm -D --defined-only "$spb_so" | awk '$3 == "malloc" { f = 1 } END { exit !f }'; then
	echo "note: $spb_so defines no malloc yet: the spbmalloc row measures glibc's malloc" >&2
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
run() { # NAME PRELOAD BIN MODE
	line=$(env ${2:+LD_PRELOAD=$2} "$3" coverage --mode "$4" --mib "$mib" | grep '^coverage ')
	echo "$1 $line" >>"$tmp"
	echo "  $1: $line" >&2
}
rows="glibc jemalloc tcmalloc mimalloc spbmalloc spb_pages"
r=1
while [ "$r" -le "$reps" ]; do
	echo "repetition $r/$reps" >&2
	for a in $rows; do
		case $a in
		glibc) run glibc "" "$malloc_bin" malloc ;;
		jemalloc|tcmalloc|mimalloc)
			eval lib=\$$a
			if [ -n "$lib" ]; then run "$a" "$lib" "$malloc_bin" malloc
			elif [ "$r" -eq 1 ]; then echo "  $a: not installed, skipped" >&2; fi ;;
		spbmalloc)
			if [ -f "$spb_so" ]; then run spbmalloc "$(realpath "$spb_so")" "$malloc_bin" malloc
			elif [ "$r" -eq 1 ]; then echo "  spbmalloc: $spb_so not built, skipped" >&2; fi ;;
		spb_pages) run spb_pages "" "$engine_bin" spb_pages ;;
		esac
	done
	r=$((r + 1))
done
[ -z "$raw" ] || cp "$tmp" "$raw"

# Medians per allocator; RSS ratio against glibc's median.
awk -v mib="$mib" -v reps="$reps" '
function val(s, k,   i, n, kv) { n = split(s, kv, " "); for (i = 1; i <= n; i++)
	if (index(kv[i], k "=") == 1) return substr(kv[i], length(k) + 2); return "" }
function med(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--)
	{ t = a[j]; a[j] = a[j-1]; a[j-1] = t } return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
{ a = $1; if (!(a in n)) order[++na] = a; k = ++n[a]
  cov[a, k] = val($0, "coverage"); huge[a, k] = val($0, "anon_huge_kb")
  anon[a, k] = val($0, "anon_kb"); rss[a, k] = val($0, "rss_kb"); tms[a, k] = val($0, "touch_ms") }
END {
	for (i = 1; i <= na; i++) { a = order[i]
		for (k = 1; k <= n[a]; k++) { c[k] = cov[a, k]; h[k] = huge[a, k]; an[k] = anon[a, k]; r[k] = rss[a, k]; t[k] = tms[a, k] }
		mc[a] = med(c, n[a]); mh[a] = med(h, n[a]); ma[a] = med(an, n[a]); mr[a] = med(r, n[a]); mt[a] = med(t, n[a]) }
	printf "# huge-page coverage, %d MiB working set of 2 MiB allocations, median of %d\n", mib, reps
	printf "%-10s %9s %15s %13s %11s %13s %10s\n", "allocator", "coverage", "AnonHugePages", "Anonymous", "RSS_MiB", "RSS/glibc", "touch_ms"
	g = 0; for (i = 1; i <= na; i++) if (order[i] == "glibc") g = mr["glibc"]
	for (i = 1; i <= na; i++) { a = order[i]
		ratio = "-"; if (g > 0) ratio = sprintf("%.4f", mr[a] / g)
		printf "%-10s %9.4f %12.0f MiB %9.0f MiB %11.1f %13s %10.0f\n", a, mc[a], mh[a] / 1024, ma[a] / 1024,
			mr[a] / 1024, ratio, mt[a] }
}' "$tmp"
