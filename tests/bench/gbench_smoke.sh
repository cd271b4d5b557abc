#!/bin/sh
# gbench_smoke.sh BINARY NAME... — run a Google Benchmark binary of
# benchmarks/gbench for a minimal time per benchmark (a smoke test, not a
# timing) and check that it exits 0 and that its output names each NAME.
# --benchmark_min_time takes plain seconds in 1.7.1 (Debian 12); newer
# releases still accept that form.
set -u
bin=$1
shift
if [ ! -x "$bin" ]; then
	echo "gbench_smoke: $bin is not an executable"
	exit 1
fi
out=$("$bin" --benchmark_min_time=0.001 --benchmark_color=false 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
	echo "gbench_smoke: $bin exited with $rc"
	exit 1
fi
case $out in
*ERROR\ OCCURRED*)
	echo "gbench_smoke: a benchmark reported an error"
	exit 1 ;;
esac
for name in "$@"; do
	if ! printf '%s\n' "$out" | grep -qF -- "$name"; then
		echo "gbench_smoke: no benchmark named '$name' in the output"
		exit 1
	fi
done
echo "gbench_smoke: $(printf '%s\n' "$out" | grep -c 'items_per_second') benchmarks ran"
