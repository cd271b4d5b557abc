#!/usr/bin/env python3
"""repro_pinning.py ROUNDS — a reproducer (not a test) of what the redis soak
found: 72 KiB page runs of long-lived blocks left alone in pageblocks that
transient blocks filled, so that whole pageblocks stay in use (and resident)
for a few KiB of live data each.

Each round allocates NT transient blocks (TSIZES, 16-100 KiB: a server's reply
and query buffers), and meanwhile replaces one of NLIVE long-lived blocks of
LSIZE bytes (65546 B: a redis 64 KB value with its header; spbmalloc gives it
an 18-page run) every NT/NLIVE transients; then frees the transients in random
order. Live data stays at NLIVE * LSIZE.

  LD_PRELOAD=build/lib/libspbmalloc.so SPBMALLOC_STATSEG_DELAY_MS=0 \\
      SPBSTAT=build/tools/spbstat/spbstat python3 tests/soak/repro_pinning.py 45

Measured (Debian 12, python3 3.11, 45 rounds, RSS after a 2.5 s pause):
spbmalloc 4494173/ec638fc ~165 MiB RSS, 75-77 pageblocks in use for 58 MiB
live; jemalloc 5.3 (decay 0) 71 MiB; glibc 216 MiB. In redis (soak.py redis,
SPB_SOAK_REDIS_PARTS=bench) the count of such pageblocks keeps growing.
"""
import ctypes
import json
import os
import random
import subprocess
import sys
import time

libc = ctypes.CDLL(None)
malloc = libc.malloc
malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
free = libc.free
free.argtypes = [ctypes.c_void_p]
memset = libc.memset
memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

NLIVE = int(os.environ.get("NLIVE", "800"))
LSIZE = int(os.environ.get("LSIZE", "65546"))
TSIZES = [int(x) for x in os.environ.get("TSIZES", "16384,32768,102400").split(",")]
NT = int(os.environ.get("NT", "3000"))


def stat():
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) >> 10 for line in f if line.startswith("VmRSS"))
    try:
        p = subprocess.run([os.environ["SPBSTAT"], "--json", str(os.getpid())],
                           capture_output=True, timeout=30)
        g = json.loads(p.stdout)["gauges"]
        used = sum(v for k, v in g["pageblocks_by_class"].items() if k != "free")
        return f"RSS {rss} MiB, pageblocks in use {used}, spbmalloc live {g['live_bytes'] >> 20} MiB"
    except (KeyError, OSError, ValueError, subprocess.SubprocessError):
        return f"RSS {rss} MiB"


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 45
    rng = random.Random(1)
    live = [None] * NLIVE
    for r in range(rounds):
        trans = []
        for j in range(NT):
            n = rng.choice(TSIZES)
            t = malloc(n)
            memset(t, 1, n)
            trans.append(t)
            if j % max(1, NT // NLIVE) == 0:
                i = rng.randrange(NLIVE)
                p = malloc(LSIZE)
                memset(p, 2, LSIZE)
                if live[i]:
                    free(live[i])
                live[i] = p
        rng.shuffle(trans)
        for t in trans:
            free(t)
        if r % max(1, rounds // 15) == 0 or r == rounds - 1:
            time.sleep(2.5)
            print(f"round {r}: {stat()} (live data {NLIVE * LSIZE >> 20} MiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
