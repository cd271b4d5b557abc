#!/bin/sh
# replay.sh — run the inputs saved in the given directories through the
# fuzz binary, each once (libFuzzer's "run these files" mode): the
# regression runs of tests/fuzz/CMakeLists.txt (fuzz.replay: the seed
# corpus, in one process; fuzz.crashes: the reproducers of found bugs, one
# process each so that each one is reported by name).
#   usage: replay.sh [-1] [-e] FUZZ_BINARY DIR...
#   -1  one process per input, every input run, the failing ones named
#   -e  no input at all is a pass (an empty crashes/), not a failure
# Exit status: 0 = every input passed.
set -eu
each=0
empty_ok=0
while [ $# -gt 0 ]; do
	case $1 in
	-1) each=1; shift ;;
	-e) empty_ok=1; shift ;;
	*) break ;;
	esac
done
bin=$1
shift
if [ ! -x "$bin" ]; then
	echo "SKIPPED: $bin not built"
	exit 77
fi
files=$(for d in "$@"; do
	[ -d "$d" ] && find "$d" -type f ! -name '*.md' ! -name 'README*' | sort
done)
if [ -z "$files" ]; then
	echo "no inputs in $*"
	[ "$empty_ok" = 1 ] && exit 0
	exit 1
fi
n=$(echo "$files" | wc -l)
echo "replaying $n inputs"
# -error_exitcode: libFuzzer says 77 by default, which ctest reads as "skipped".
opts="-rss_limit_mb=4096 -timeout=60 -error_exitcode=1 -timeout_exitcode=1"
if [ "$each" = 0 ]; then
	# shellcheck disable=SC2086 # options and file names are ours: no blanks
	exec "$bin" $opts $files
fi
failed=""
for f in $files; do
	# shellcheck disable=SC2086
	if "$bin" $opts "$f" >"${TMPDIR:-/tmp}/replay.$$" 2>&1; then
		echo "ok      $f"
	else
		echo "FAILED  $f:"
		grep -E '^spbfuzz: |^spbmalloc: |runtime error|ERROR: libFuzzer' "${TMPDIR:-/tmp}/replay.$$" | head -n 12 | sed 's/^/        /'
		failed="$failed $f"
	fi
done
rm -f "${TMPDIR:-/tmp}/replay.$$"
if [ -n "$failed" ]; then
	echo "failing inputs:$failed"
	exit 1
fi
