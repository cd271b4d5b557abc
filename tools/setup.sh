#!/usr/bin/env bash
# setup.sh — first contact: install what is missing (apt-get, as root; else
# print what to install), build Release into build/, then run a real program
# under LD_PRELOAD=build/lib/libspbmalloc.so with the stats shown.
#   SPB_BUILD_DIR  build directory (default: build)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=tools/lib-deps.sh
. tools/lib-deps.sh

build=${SPB_BUILD_DIR:-build}
spb_deps_ensure "${SPB_BUILD_PKGS[@]}" "${SPB_PEER_PKGS[@]}"

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(spb_nproc)"

lib=$root/$build/lib/libspbmalloc.so
spbstat=$root/$build/tools/spbstat/spbstat
echo
echo "== built: $lib"
if nm -D --defined-only "$lib" | awk '{print $3}' | grep -qx malloc; then
	echo "== running python3 on spbmalloc (LD_PRELOAD, SPBMALLOC_STATS=1)"
else
	echo "== note: this libspbmalloc.so does not define malloc yet, so the"
	echo "   program below runs on glibc's malloc (LD_PRELOAD is a no-op)"
fi

# An allocation-heavy program: it builds and drops a few hundred MB of
# objects of many sizes, then stays alive long enough for spbstat to look.
ready=$(mktemp)
trap 'rm -f "$ready"' EXIT
linger=0
[ -x "$spbstat" ] && linger=${SPB_SETUP_LINGER:-2}
SPB_SETUP_LINGER=$linger LD_PRELOAD=$lib SPBMALLOC_STATS=1 SPBMALLOC_STATSEG_DELAY_MS=0 python3 -c '
import os, sys, time
keep = []
for rnd in range(4):
    d = {i: str(i) * (1 + i % 50) for i in range(200000)}
    blobs = [bytearray(64 << (i % 12)) for i in range(4000)]
    keep.append(blobs[::50])
    del d, blobs
total = sum(len(b) for blobs in keep for b in blobs)
print("python3: churned 4 rounds, keeps %d objects, %.1f MiB" %
      (sum(map(len, keep)), total / 2**20))
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(float(os.environ["SPB_SETUP_LINGER"]))
' "$ready" &
prog=$!

if [ -x "$spbstat" ]; then
	for _ in $(seq 300); do
		[ -s "$ready" ] && break
		kill -0 "$prog" 2>/dev/null || break
		sleep 0.1
	done
	echo "== $build/tools/spbstat/spbstat"
	"$spbstat" || echo "(spbstat exited with status $?)"
else
	echo "== spbstat is not built yet ($build/tools/spbstat/spbstat): no live view"
fi
wait "$prog"
echo "== done. Next: tools/test.sh runs the test suite."
