#!/usr/bin/env bash
# run-model.sh — generate, compile and run SPIN's exhaustive verifier for
# tests/model/notify.pml (the full/notify protocol of lib/heap.c and the
# cross-thread free of lib/free.c and lib/span.c), or with
# --model handle.pml the move protocol of handle objects (lib/handle.c,
# lib/compact.c).
#
#   run-model.sh [--model FILE] [--expect-violation] [--full] [--workdir DIR]
#                [CONFIG...]
#
# CONFIG is one model size and variant, as spin -D options in one word,
# e.g. "-DNS=3 -DOPS_A=3 -DOPS_B=0 -DOPS_C=1"; a word "pan:FLAGS" adds
# flags to that run's verifier (e.g. "pan:-E"). Without CONFIGs: the quick
# set (ctest model.notify); --full: the larger set (minutes, GBs).
#   --expect-violation  succeed only if SPIN finds a violation in every
#                       CONFIG (ctest model.notify_old_bugs: the model can
#                       fail), and print its trail in short.
# Exit: 0 as expected, 1 not, 77 spin or a C compiler missing (skipped).
set -u

here=$(cd "$(dirname "$0")" && pwd)
name=notify.pml
expect_violation=0
full=0
workdir=
configs=()
while [ $# -gt 0 ]; do
	case $1 in
	--expect-violation) expect_violation=1 ;;
	--full) full=1 ;;
	--workdir) workdir=$2; shift ;;
	--model) name=$2; shift ;;
	-h | --help) sed -n '2,18p' "$0"; exit 0 ;;
	*) configs+=("$1") ;;
	esac
	shift
done

if ! command -v spin >/dev/null 2>&1; then
	echo "SKIP: spin not installed (apt-get install spin)"
	exit 77
fi
cc=${CC:-}
if [ -z "$cc" ] || ! command -v "$cc" >/dev/null 2>&1; then
	cc=
	for c in cc gcc clang; do
		if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
	done
fi
if [ -z "$cc" ]; then
	echo "SKIP: no C compiler to build SPIN's verifier"
	exit 77
fi

model=$here/$name
if [ ${#configs[@]} -eq 0 ] && [ "$name" = handle.pml ]; then
	# The protocol as written: one, two and three moves (and a realloc
	# and a free). Quick: 6.7 M
	# states in all, about 30 s of CPU; --full: 89 M, about 8 min and
	# 2.6 GB at most (2026-12-03).
	fix=""
	if [ $full -eq 1 ]; then
		configs=(
			"-DNW=3 -DOPS=2"
			"-DNW=2 -DOPS=3"
			"-DNW=2 -DOPS=2 -DPINOPS=2 -DREALLOC"
			"-DNW=2 -DOPS=2 -DPINOPS=2 -DTRIES=3 -DREALLOC $fix"
			"-DNW=2 -DOPS=3 -DTRIES=2 $fix"
		)
	else
		configs=(
			"-DNW=2 -DOPS=2"
			"-DNW=1 -DOPS=2 -DPINOPS=2"
			"-DNW=2 -DOPS=2 -DREALLOC"
			"-DNW=2 -DOPS=2 -DTRIES=2 $fix"
			"-DNW=1 -DOPS=2 -DPINOPS=2 -DTRIES=2 -DREALLOC $fix"
		)
	fi
elif [ ${#configs[@]} -eq 0 ]; then
	if [ $full -eq 1 ]; then
		configs=(
			"-DNS=3 -DOPS_A=3 -DOPS_B=1 -DOPS_C=1"
			"-DNS=3 -DOPS_A=2 -DOPS_B=2 -DOPS_C=1"
			"-DNS=3 -DOPS_A=2 -DOPS_B=1 -DOPS_C=1 -DSWEEP"
			"-DNS=3 -DCAP=2 -DOPS_A=4 -DOPS_B=1 -DOPS_C=1"
			"-DNS=2 -DOPS_A=2 -DOPS_B=1 -DOPS_C=1 -DFORK -DFORK_FIX pan:-E"
		)
	else
		configs=(
			"-DNS=3 -DOPS_A=3 -DOPS_B=0 -DOPS_C=1"
			"-DNS=2 -DOPS_A=2 -DOPS_B=1 -DOPS_C=1"
			"-DNS=3 -DCAP=2 -DOPS_A=3 -DOPS_B=0 -DOPS_C=1"
			"-DNS=2 -DOPS_A=2 -DOPS_B=0 -DOPS_C=1 -DSWEEP"
		)
	fi
fi

if [ -z "$workdir" ]; then
	workdir=$(mktemp -d "${TMPDIR:-/tmp}/spb-model.XXXXXX")
	trap 'rm -rf "$workdir"' EXIT
fi
mkdir -p "$workdir" || exit 1

# The trail in short: the steps that touch the protocol's shared words,
# with the processes named.
trail_summary()
{
	if [ "$name" = handle.pml ]; then
		# The shared words' steps; a local's reset, a loop's
		# bookkeeping and the else branches left out.
		# shellcheck disable=SC2086 # the defines are words
		spin -t -p $1 handle.pml 2>&1 |
			grep -E 'proc +[1-9][0-9]* \(|Error|failed assertion|trail ends|terminates' |
			grep -vE '\[(src|dst|v|wp|wn|wf|i|p|q|n|t|ok|want\[i\]|snap\[i\]) = 0\]|\[else\]|\[\(\((i|n|t)<|\[(i|n|t) = \(|\[goto |\[break\]|\[\(1\)\]' |
			sed -E 's/handle\.pml:([0-9]+) \(state [0-9]+\)/l.\1/;
				s/proc +([0-9]+) \(([a-z]+):1\)/\2(\1)/' |
			tail -n 90
		return
	fi
	if [ "$name" != notify.pml ]; then
		# shellcheck disable=SC2086 # the defines are words
		spin -t -p $1 "$name" 2>&1 | grep -vE '^[[:space:]]*$' | tail -n 40
		return
	fi
	# shellcheck disable=SC2086 # the defines are words
	spin -t -p $1 notify.pml 2>&1 |
		grep -vE '^[[:space:]]*queue|^[[:space:]]*$' |
		grep -E 'sfull\[|sheap\[|xn\[|fl\[|xsum\[|seen = |got = fl|hst\[|blk[?!]|forked|trail ends|Error|failed assertion|cur = s|\[\(timeout\)\]' |
		grep -vE '^[[:space:]]*[0-9]+:.*\[assert|^[[:space:]]+[a-z]+\[[0-9]\] = |\(:init:' |
		sed -E 's/proc  1 \(owner:1\)/A(heap0)/; s/proc  2 \(owner:1\)/B(heap1)/;
			s/proc  3 \(owner:1\)/C(heap0)/; s/proc  4 \(remote:1\)/R1/;
			s/proc  5 \(remote:1\)/R2/; s/proc  6 \(sweeper:1\)/sweep/;
			s/notify\.pml:([0-9]+) \(state [0-9]+\)/l.\1/' |
		tail -n 70
}

status=0
n=0
for cfg in "${configs[@]}"; do
	n=$((n + 1))
	defs='' panflags=''
	for w in $cfg; do
		case $w in
		pan:*) panflags="$panflags ${w#pan:}" ;;
		*) defs="$defs $w" ;;
		esac
	done
	dir=$workdir/run$n
	rm -rf "$dir" && mkdir -p "$dir" && cp "$model" "$dir/" || exit 1
	echo "== $name$defs${panflags:+ (pan$panflags)}"
	# shellcheck disable=SC2086
	if ! (cd "$dir" && spin $defs -a "$name" >spin.log 2>&1); then
		cat "$dir/spin.log"
		echo "FAIL: spin could not generate the verifier"
		status=1
		continue
	fi
	if ! (cd "$dir" && "$cc" -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=6144 -o pan pan.c \
		>cc.log 2>&1); then
		cat "$dir/cc.log"
		echo "FAIL: the verifier did not compile"
		status=1
		continue
	fi
	# shellcheck disable=SC2086
	(cd "$dir" && ./pan -m100000 $panflags >pan.log 2>&1)
	log=$dir/pan.log
	grep -E 'errors:|states, stored|elapsed time|assertion violated|invalid end state \(|max search depth too small|out of memory|memory limit' \
		"$log" | sed 's/^/   /'
	errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
	if [ -z "$errors" ]; then
		tail -n 20 "$log"
		echo "FAIL: the verifier did not finish"
		status=1
		continue
	fi
	if grep -qE 'max search depth too small|out of memory|memory limit' "$log"; then
		echo "FAIL: the search was not exhaustive"
		status=1
		continue
	fi
	if [ "$errors" -gt 0 ]; then
		echo "-- trail, in short (full: cd $dir && spin -t -p$defs $name):"
		(cd "$dir" && trail_summary "$defs") | sed 's/^/   /'
		if [ $expect_violation -eq 1 ]; then
			echo "ok: SPIN finds the violation"
		else
			echo "FAIL: violation"
			status=1
		fi
	elif [ $expect_violation -eq 1 ]; then
		echo "FAIL: no violation found, the model cannot tell this variant apart"
		status=1
	else
		echo "ok: no violation"
	fi
done
exit $status
