#!/usr/bin/env bash
# run-fuzz.sh — fuzz spbmalloc with the libFuzzer target (fuzz_malloc.c)
# for SECONDS with JOBS worker processes, then print the speed (execs/s)
# and the edge coverage ("cov:", libFuzzer's count of covered edges).
#
#   usage: tests/fuzz/run-fuzz.sh [-B BUILD_DIR | -b FUZZ_BINARY] [-w WORKDIR]
#                                 SECONDS [JOBS] [-- LIBFUZZER_ARGS...]
#   -B  a configured build tree (default: build); the target spb_fuzz is
#       built there first (nice, -j2)
#   -b  an already built spbfuzz binary (no build)
#   -w  work directory (default: BUILD_DIR/tests/fuzz/work): corpus/ gets
#       the new inputs, artifacts/ the crashes (crash-*, timeout-*, oom-*),
#       fuzz.log the output. The seed corpus tests/fuzz/corpus is read, never
#       written.
#   JOBS 1 fuzzes in this process; N > 1 uses libFuzzer's -fork=N (N
#       children, one merged corpus and coverage figure).
# Exit status: libFuzzer's: 0 = nothing found in the time, else a crash,
# leak, timeout or OOM, saved under WORKDIR/artifacts/ (replay it with
# `spbfuzz FILE`; SPBFUZZ_TRACE=1 prints every operation).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build
bin=
work=
while getopts "B:b:w:h" opt; do
	case $opt in
	B) build=$OPTARG ;;
	b) bin=$OPTARG ;;
	w) work=$OPTARG ;;
	*) sed -n '2,20p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
secs=${1:?usage: run-fuzz.sh [-B build | -b binary] [-w workdir] SECONDS [JOBS]}
jobs=${2:-1}
shift $(($# >= 2 ? 2 : 1))
[ "${1:-}" = "--" ] && shift

if [ -z "$bin" ]; then
	if [ ! -f "$build/CMakeCache.txt" ]; then
		echo "run-fuzz.sh: $build is not a configured build tree (cmake -S . -B $build)" >&2
		exit 2
	fi
	nice -n 10 cmake --build "$build" --target spb_fuzz -j 2 >&2
	bin=$build/tests/fuzz/spbfuzz
	if [ ! -x "$bin" ]; then
		echo "SKIPPED: no spbfuzz in $build (no clang with libFuzzer? see cmake's tests/fuzz message)"
		exit 77
	fi
	work=${work:-$build/tests/fuzz/work}
fi
if [ ! -x "$bin" ]; then
	echo "SKIPPED: $bin not built"
	exit 77
fi
work=${work:-$(dirname "$bin")/work}
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/fuzz.log

# libFuzzer exits 77 on a crash by default: ctest would read that as "skipped".
args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -max_len=4096
      -error_exitcode=1 -timeout_exitcode=1
      -print_final_stats=1 -artifact_prefix="$work/artifacts/")
if [ "$jobs" -gt 1 ]; then
	args+=(-fork="$jobs")
fi
echo "run-fuzz.sh: $bin for ${secs}s, $jobs job(s), work in $work"
status=0
"$bin" "${args[@]}" "$@" "$work/corpus" "$here/corpus" >"$log" 2>&1 || status=$?

# The last status line: "#123 ... cov: 456 ft: 789 corp: ... exec/s: 1011 ..."
# (-fork: "#123: cov: 456 ft: 789 corp: 12 exec/s 34 ... time: 56s ...").
last=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | tail -n 1 || true)
cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")
ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<<"$last")
corp=$(sed -nE 's/.*corp: ([0-9]+).*/\1/p' <<<"$last")
execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)
if [ "$jobs" -gt 1 ]; then
	# -fork prints the rate of the last job only: the run's average, and
	# the edge coverage of the merged corpus as one process counts it
	# (the fork driver's "cov:" counts differently).
	t=$(sed -nE 's/^INFO: exiting: .* time: ([0-9]+)s.*/\1/p' "$log" | tail -n 1)
	[ -n "$t" ] && [ "$t" -gt 0 ] && [ -n "$execs" ] && eps=$((execs / t))
	cov_fork=$cov
	cov=$("$bin" -runs=0 -error_exitcode=1 "$work/corpus" 2>&1 |
		sed -nE 's/^#[0-9]+[[:space:]]+INITED.*cov: ([0-9]+).*/\1/p' | tail -n 1)
	cov="${cov:-?} (merged corpus replayed; fork driver said ${cov_fork:-?})"
fi
echo "--- last lines of $log:"
tail -n 8 "$log"
echo "---"
if grep -qE '^(==[0-9]+==)?ERROR|^SUMMARY|spbfuzz: |runtime error' "$log"; then
	echo "run-fuzz.sh: FOUND A PROBLEM (exit $status):"
	grep -E 'spbfuzz: |runtime error|ERROR: libFuzzer|SUMMARY|^spbmalloc: |Test unit written' "$log" | head -n 30
fi
echo "run-fuzz.sh: ${secs}s, $jobs job(s): execs ${execs:-?}, exec/s ${eps:-?}, cov: ${cov:-?} ft: ${ft:-?} corpus: ${corp:-?} (exit $status)"
exit "$status"
