#!/usr/bin/env bash
# benchmarks/latency/run.sh - per-call latency of malloc and free while the
# allocator gives memory back to the OS (benchmarks/workloads/latency.c).
#
# README
#   The workload grows a heap of mixed sizes (16 B..256 KiB, a quarter of the
#   bytes in 2..8 MiB blocks) to heap_mb (384 MiB), frees most of it, sleeps
#   past the decay delay (spbmalloc runs with SPBMALLOC_DECAY_MS=20, so its
#   releases come due often), grows again: 16 phases, ~10 s on a 2-core
#   machine. Every malloc and free is timed on its own (TSC, fenced); the
#   tables give medians across repetitions of p50..p99.99, max (ns unless
#   marked us/ms) and the count of calls over 10 us, 100 us and 1 ms, for all
#   calls and for the calls during which the thread was not preempted
#   ("not preempted": on a loaded machine preemption, not the allocator,
#   makes most calls over 1 ms; see the top comment of latency.c).
#   Debian's mimalloc 2.0 takes ~2 min a run with the defaults on a 2-core
#   machine (it purges after 10 ms and refaults all the time).
#
#   This script builds nothing. Build the workload and the library first:
#     cmake -S . -B /tmp/b -DCMAKE_BUILD_TYPE=Release
#     make -C /tmp/b -j2 wl_latency spbmalloc
#   then, e.g.:
#     benchmarks/latency/run.sh /tmp/b                       # spbmalloc, BG=1
#     benchmarks/latency/run.sh /tmp/b -a spb,spb-bg0,glibc,mimalloc -n 5
#     benchmarks/latency/run.sh /tmp/b -a old,spb --old /tmp/b-old/lib/libspbmalloc.so
#     benchmarks/latency/run.sh /tmp/b -a spb,glibc --strace -- heap_mb=256
#   A "before" library for --old: git worktree add /tmp/old <commit>, then
#   cmake -S /tmp/old -B /tmp/b-old -DCMAKE_BUILD_TYPE=Release
#   -DSPB_BUILD_TESTS=OFF -DSPB_BUILD_TOOLS=OFF; make -C /tmp/b-old spbmalloc.
#
# Usage: run.sh BUILD_DIR [options] [-- workload key=value ...]
#   -n N          repetitions (3); runs are interleaved: every configuration
#                 and thread count once, then again (A B C A B C ...);
#                 -n 0 --strace: only the strace runs
#   -t LIST       thread counts, space or comma separated ("1 2")
#   -a LIST       configurations, comma separated (spb):
#                   spb       BUILD_DIR/lib/libspbmalloc.so, background thread on
#                   spb-bg0   the same with SPBMALLOC_BG=0 (deferred work inline)
#                   old, old-bg0  the library of --old, BG=1 / BG=0
#                   glibc     no preload
#                   jemalloc, tcmalloc, mimalloc  the Debian libraries, found
#                             the way benchmarks/compare finds them
#   --spb LIB     libspbmalloc.so for spb/spb-bg0 instead of BUILD_DIR's
#   --old LIB     libspbmalloc.so for old/old-bg0
#   --decay-ms MS SPBMALLOC_DECAY_MS of every spbmalloc run (20); the other
#                 allocators run with their defaults
#   --ops LIST    histograms in the tables ("malloc free"; also malloc_small
#                 free_small malloc_big free_big: <= 256 KiB and 2..8 MiB)
#   --strace      then one more run per configuration and thread count under
#                 strace -f, counting mmap, munmap, madvise (by advice),
#                 mremap, mprotect, brk made by the timed threads (their only
#                 such calls are inside malloc and free) and by every other
#                 thread (a background thread); strace slows the traced calls,
#                 so these runs are not timed
#   -o DIR        keep every output in DIR (default: a new directory in /tmp)
#   --tables      run nothing: print the tables again from the outputs of an
#                 earlier run in -o DIR (same -a, -t, -n; --strace to include
#                 its system-call counts), e.g. with other --ops
# The workload and the libraries are copied into the output directory
# first: a rebuild while the script runs does not change what is measured.
# Workload arguments after -- go to every run (see latency.c: heap_mb=,
# phases=, idle_ms=; threads= is set here).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }

[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage 0 ;; esac
BUILD=$(cd "$1" && pwd); shift
REPS=3 THREADS="1 2" CONFIGS=spb SPB="" OLD="" DECAY=20 OPS="malloc free"
STRACE=0 OUT="" WLARGS=() CFGS=() TABLES=0
while [ $# -gt 0 ]; do
	case "$1" in
	-n) REPS=$2; shift 2 ;;
	-t) THREADS=${2//,/ }; shift 2 ;;
	-a) CONFIGS=$2; shift 2 ;;
	--spb) SPB=$2; shift 2 ;;
	--old) OLD=$2; shift 2 ;;
	--decay-ms) DECAY=$2; shift 2 ;;
	--ops) OPS=${2//,/ }; shift 2 ;;
	--strace) STRACE=1; shift ;;
	--tables) TABLES=1; shift ;;
	-o) OUT=$2; shift 2 ;;
	-h|--help) usage 0 ;;
	--) shift; WLARGS=("$@"); break ;;
	*) echo "run.sh: unknown option $1" >&2; usage ;;
	esac
done

WL=$BUILD/benchmarks/workloads/wl_latency
[ -x "$WL" ] || { echo "run.sh: $WL missing (make wl_latency in $BUILD)" >&2; exit 1; }
[ -n "$SPB" ] || SPB=$BUILD/lib/libspbmalloc.so
if [ -z "$OUT" ]; then OUT=$(mktemp -d /tmp/latency.XXXXXX); fi
if [ "$TABLES" = 1 ]; then
	[ -d "$OUT" ] || { echo "run.sh: --tables needs -o DIR of an earlier run" >&2; exit 1; }
else
	mkdir -p "$OUT"
	cp "$WL" "$OUT/wl_latency"
	WL=$OUT/wl_latency
fi

# As benchmarks/compare: the multiarch library directories, then ldconfig.
find_lib() {
	local d n arch
	arch=$(gcc -print-multiarch 2>/dev/null || true)
	for d in ${arch:+/usr/lib/$arch /lib/$arch} /usr/lib64 /usr/lib /lib64 /lib /usr/local/lib; do
		for n in "$@"; do
			[ -e "$d/$n" ] && { readlink -f "$d/$n"; return 0; }
		done
	done
	for n in "$@"; do
		d=$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1 == n && /=>/ {print $NF; exit}')
		[ -n "$d" ] && { readlink -f "$d"; return 0; }
	done
	return 1
}

snapshot() {	# snapshot NAME LIB: copy LIB into $OUT, print the copy's path
	[ "$TABLES" = 0 ] || { echo "$OUT/$1.so"; return 0; }
	[ -f "$2" ] || { echo "run.sh: $1: $2 not found" >&2; exit 1; }
	cp "$2" "$OUT/$1.so"
	echo "$1: $2 sha256 $(sha256sum "$2" | cut -c1-16)" >>"$OUT/libs.txt"
	echo "$OUT/$1.so"
}

declare -A PRELOAD ENVS
[ "$TABLES" = 1 ] || : >"$OUT/libs.txt"
for c in ${CONFIGS//,/ }; do
	case $c in
	spb|spb-bg0)
		[ -n "${SPBSNAP:-}" ] || SPBSNAP=$(snapshot spbmalloc "$SPB")
		PRELOAD[$c]=$SPBSNAP ;;
	old|old-bg0)
		[ -n "$OLD" ] || [ "$TABLES" = 1 ] || { echo "run.sh: $c needs --old LIB" >&2; exit 1; }
		[ -n "${OLDSNAP:-}" ] || OLDSNAP=$(snapshot spbmalloc-old "$OLD")
		PRELOAD[$c]=$OLDSNAP ;;
	glibc) PRELOAD[$c]="" ;;
	jemalloc|tcmalloc|mimalloc)
		case $c in
		jemalloc) l=$(find_lib libjemalloc.so.2 || true) ;;
		tcmalloc) l=$(find_lib libtcmalloc_minimal.so.4 || true) ;;
		mimalloc) l=$(find_lib libmimalloc.so.2 libmimalloc.so.2.0 || true) ;;
		esac
		[ -n "$l" ] || { echo "run.sh: $c not installed, skipped" >&2; continue; }
		[ "$TABLES" = 1 ] || echo "$c: $l" >>"$OUT/libs.txt"
		PRELOAD[$c]=$l ;;
	*) echo "run.sh: unknown configuration $c" >&2; exit 2 ;;
	esac
	case $c in
	spb|old) ENVS[$c]="SPBMALLOC_BG=1 SPBMALLOC_DECAY_MS=$DECAY" ;;
	spb-bg0|old-bg0) ENVS[$c]="SPBMALLOC_BG=0 SPBMALLOC_DECAY_MS=$DECAY" ;;
	*) ENVS[$c]="" ;;
	esac
	CFGS+=("$c")
done
[ ${#CFGS[@]} -gt 0 ] || { echo "run.sh: nothing to run" >&2; exit 1; }

runone() {	# runone CONFIG THREADS OUTFILE [wrapper...]
	local c=$1 t=$2 f=$3; shift 3
	# The wrapper (strace) runs env, which sets the preload for the
	# workload alone.
	# shellcheck disable=SC2086
	"$@" env ${PRELOAD[$c]:+LD_PRELOAD=${PRELOAD[$c]}} ${ENVS[$c]} \
		"$WL" threads="$t" "${WLARGS[@]}" >"$f" 2>"${f%.kv}.err" || {
		echo "run.sh: $c threads=$t failed (rc $?), see ${f%.kv}.err" >&2
		return 1; }
}

if [ "$TABLES" = 0 ]; then
	{ echo "start $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
	  echo "nproc $(nproc) kernel $(uname -r) thp $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
	  echo "workload args: ${WLARGS[*]:-(defaults)} decay_ms(spbmalloc)=$DECAY"; } >"$OUT/machine.txt"
	echo "run.sh: outputs in $OUT" >&2
	for r in $(seq 1 "$REPS"); do
		for t in $THREADS; do
			for c in "${CFGS[@]}"; do
				echo "run.sh: rep $r/$REPS threads=$t $c" >&2
				runone "$c" "$t" "$OUT/$c.t$t.r$r.kv" || true
			done
		done
	done
	echo "end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
fi

# Median across repetitions of every key, per configuration and thread count.
median() {	# median CONFIG THREADS KEY ("-" when no run has it)
	local fs=("$OUT/$1.t$2".r*.kv)
	[ -e "${fs[0]}" ] || { echo -; return 0; }
	awk -F= -v k="$3" '$1 == k {print $2}' "${fs[@]}" |
		sort -g | awk '{v[NR] = $1} END {
			if (!NR) { print "-"; exit }
			if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() {		# ns -> ns, us or ms, 4-5 significant characters
	awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else if (v < 10000) printf "%d\n", v;
		else if (v < 1e6) printf "%.1fus\n", v / 1e3; else printf "%.2fms\n", v / 1e6 }'
}
cnt() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%g\n", v }'; }

cat "$OUT/machine.txt"
cat "$OUT/libs.txt"
nrep=$(find "$OUT" -maxdepth 1 -name "${CFGS[0]}.t${THREADS%% *}.r*.kv" | wc -l)
echo "medians of $nrep repetitions (ns unless marked)"
for view in "" _np; do
	for op in $OPS; do
		echo
		if [ -z "$view" ]; then echo "$op, all calls"; else echo "$op, calls not preempted"; fi
		printf '%-9s %2s %8s %6s %6s %7s %8s %8s %8s %6s %6s %5s %5s\n' config thr count \
			p50 p90 p99 p99.9 p99.99 max '>10us' '>100us' '>1ms' preem
		for t in $THREADS; do
			for c in "${CFGS[@]}"; do
				k=$op$view
				printf '%-9s %2s %8s %6s %6s %7s %8s %8s %8s %6s %6s %5s %5s\n' "$c" "$t" \
					"$(cnt "$(median "$c" "$t" "${k}_count")")" \
					"$(fmt "$(median "$c" "$t" "${k}_p50_ns")")" \
					"$(fmt "$(median "$c" "$t" "${k}_p90_ns")")" \
					"$(fmt "$(median "$c" "$t" "${k}_p99_ns")")" \
					"$(fmt "$(median "$c" "$t" "${k}_p999_ns")")" \
					"$(fmt "$(median "$c" "$t" "${k}_p9999_ns")")" \
					"$(fmt "$(median "$c" "$t" "${k}_max_ns")")" \
					"$(cnt "$(median "$c" "$t" "${k}_over_10us")")" \
					"$(cnt "$(median "$c" "$t" "${k}_over_100us")")" \
					"$(cnt "$(median "$c" "$t" "${k}_over_1ms")")" \
					"$(cnt "$(median "$c" "$t" "${op}_preempted")")"
			done
		done
	done
done
echo
echo "run: wall seconds (idle sleeps included), peak RSS, involuntary switches of the timed threads"
printf '%-9s %2s %8s %9s %8s\n' config thr seconds peak_MiB nivcsw
for t in $THREADS; do
	for c in "${CFGS[@]}"; do
		rss=$(median "$c" "$t" peak_rss_kb)
		printf '%-9s %2s %8s %9s %8s\n' "$c" "$t" "$(median "$c" "$t" seconds)" \
			"$(awk -v v="$rss" 'BEGIN { if (v == "-") print "-"; else printf "%.0f\n", v / 1024 }')" \
			"$(cnt "$(median "$c" "$t" worker_nivcsw)")"
	done
done

[ "$STRACE" = 1 ] || exit 0
[ "$TABLES" = 1 ] || command -v strace >/dev/null ||
	{ echo "run.sh: strace not installed" >&2; exit 1; }
echo
echo "system calls, one run each under strace -f: in malloc/free = made by the timed threads;"
echo "main = the main thread (loading, thread stacks, report); other = every other thread (a background thread)"
printf '%-9s %2s %-14s %6s %6s %7s %8s %6s %6s %6s %6s %6s\n' config thr where mmap munmap madvise \
	DONTNEED FREE HUGEP other mprot brk
for t in $THREADS; do
	for c in "${CFGS[@]}"; do
		f=$OUT/$c.t$t.strace.kv
		# --seccomp-bpf: only the traced calls stop (getrusage and the
		# rest run at full speed); older strace lacks it.
		# shellcheck disable=SC2054
		sopt=(-f -qq -o "${f%.kv}.log" -e trace=mmap,munmap,madvise,mremap,mprotect,brk)
		strace --seccomp-bpf -V >/dev/null 2>&1 && sopt=(--seccomp-bpf "${sopt[@]}")
		if [ "$TABLES" = 0 ]; then
			echo "run.sh: strace threads=$t $c" >&2
			runone "$c" "$t" "$f" strace "${sopt[@]}" -- || continue
		fi
		[ -f "${f%.kv}.log" ] || continue
		tids=$(awk -F= '$1 == "worker_tids" {print $2}' "$f")
		main=$(awk -F= '$1 == "main_tid" {print $2}' "$f")
		awk -v tids="$tids" -v main="$main" -v c="$c" -v t="$t" '
		BEGIN { n = split(tids, a, ","); for (i = 1; i <= n; i++) w[a[i]] = 1 }
		$2 ~ /^(mmap|munmap|madvise|mremap|mprotect|brk)\(/ {
			g = ($1 in w) ? "in_malloc/free" : $1 == main ? "main" : "other"
			s = $2; sub(/\(.*/, "", s); x[g, s]++
			if (s == "madvise") {
				adv = "other"
				if ($0 ~ /MADV_DONTNEED/) adv = "DONTNEED"
				else if ($0 ~ /MADV_FREE/) adv = "FREE"
				else if ($0 ~ /MADV_HUGEPAGE/) adv = "HUGEP"
				x[g, "adv_" adv]++
			}
		}
		END {
			split("in_malloc/free main other", gs, " ")
			for (i = 1; i <= 3; i++) { g = gs[i]
				printf "%-9s %2s %-14s %6d %6d %7d %8d %6d %6d %6d %6d %6d\n", c, t, g,
					x[g, "mmap"], x[g, "munmap"], x[g, "madvise"], x[g, "adv_DONTNEED"],
					x[g, "adv_FREE"], x[g, "adv_HUGEP"], x[g, "adv_other"],
					x[g, "mprotect"], x[g, "brk"] + x[g, "mremap"]
			}
		}' "${f%.kv}.log"
	done
done
echo "(brk column: brk + mremap)"
