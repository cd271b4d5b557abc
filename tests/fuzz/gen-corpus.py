#!/usr/bin/env python3
"""gen-corpus.py — write the seed corpus of the spbmalloc fuzz target
(tests/fuzz/corpus/): small inputs that each exercise one operation of
fuzz_malloc.c (or one thread pattern), in its input format:

  byte 0: threads - 1 (bits 0-1), concurrent (bit 2), trim at end (bit 3)
  then operations: one byte (code in bits 0-3, modifier in bits 4-7) and
  the operation's arguments (slot, sizes, alignments: see decode()).

Run it again after changing the format: python3 tests/fuzz/gen-corpus.py
"""
import os

MALLOC, CALLOC, REALLOC, REALLOCARRAY, FREE, ALIGNED, USABLE, CLASS_ALLOC, \
    SET_CLASS, PAGES, SEND, RECV, TRIM, SWITCH, MISC, BURST = range(16)

def hdr(threads=1, concurrent=False, trim=False):
    return [(threads - 1) | (4 if concurrent else 0) | (8 if trim else 0)]

def op(code, mod=0):
    return [code | (mod << 4)]

# ---- sizes (get_size): low 4 bits of the first byte = kind ----
def tiny(n): return [0, n]
def cls(i, d=0): return [4 | ((d + 2) << 4), i]
def small(v): return [8, v & 0xff, (v >> 8) & 0xff]
def pages(np, di=3): return [9 | (di << 4), (np - 1) & 0xff, (np - 1) >> 8]
def pbs(n, di=2): return [11 | (di << 4), n - 1]
def med(v): return [12 | (1 << 4), v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]
def failing(k): return [13 | (k << 4)]
def huge(k): return [14 | (15 << 4), k]
def giant(k): return [14 | (14 << 4), k]
def big(v): return [14, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]
def zero(): return [15 | (1 << 4)]
def pow2(e, d=1): return [15 | ((d % 3) << 5), e]

# ---- alignments (get_align) ----
def al_small(lg): return [lg]            # 1 << lg, lg < 22
def al_big(lg): return [200 + (lg - 22)]  # 4 MiB .. 1 GiB
def al_bad(k): return [240 + k]
def al_huge(k): return [248 + k]

def malloc(slot, size, mod=0): return op(MALLOC, mod) + [slot] + size
def free(slot, variant=0): return op(FREE, variant) + [slot]
def usable(slot): return op(USABLE) + [slot]
def realloc_abs(slot, size, mod=0): return op(REALLOC, mod) + [slot] + size
def realloc_rel(slot, how, delta=0): return op(REALLOC, 4 + how) + [slot, delta]
def switch(t): return op(SWITCH) + [t]
def send(slot): return op(SEND) + [slot]
def send_bulk(n): return op(SEND, 1) + [0, n - 1]
def misc(m, slot=0, x=0): return op(MISC, m) + [slot, x]
def burst_keep(n, size, calloc=False): return op(BURST, 8 | (4 if calloc else 0)) + [n - 1] + size
def bulk_free(n, order=0, variant=0): return op(FREE, 8 | order | (variant << 2)) + [n - 1]
def recv(slot, which=0, action=0, size=None):
    return op(RECV, action) + [slot, which] + (size if (action & 3) == 1 else [])
def recv_bulk(n, action=0, size=None):  # action 0 free, 1 realloc+free, 2 keep
    return op(RECV, 4 | action) + [0, n - 1] + (size if (action & 3) == 1 else [])

seeds = {}

seeds["malloc-sizes"] = hdr() + malloc(0, tiny(0)) + malloc(1, tiny(1)) + \
    malloc(2, cls(7)) + malloc(3, cls(8, -1)) + malloc(4, cls(87)) + \
    malloc(5, cls(87, 1)) + malloc(6, small(5000)) + malloc(7, pages(3)) + \
    malloc(8, pages(511, 7)) + malloc(9, pbs(1)) + malloc(10, pbs(3, 0)) + \
    malloc(11, med(0x123456)) + malloc(12, zero()) + malloc(13, pow2(12)) + \
    free(0) + free(3) + free(9) + free(8, 1) + free(10, 3)
seeds["malloc-fail"] = hdr() + sum((malloc(k, failing(k)) for k in range(8)), [])
seeds["malloc-class-boundaries"] = hdr() + sum(
    (malloc(i % 32, cls(i, d)) for i in range(0, 88, 5) for d in (-1, 0, 1)), [])
seeds["calloc"] = hdr() + op(CALLOC, 0) + [0] + tiny(100) + op(CALLOC, 1) + [1] + pages(5) + \
    op(CALLOC, 2) + [2, 37] + cls(20) + op(CALLOC, 0) + [3] + pbs(2) + \
    free(0) + op(CALLOC, 0) + [0] + tiny(100) + free(1) + op(CALLOC, 1) + [1] + pages(5)
seeds["calloc-overflow"] = hdr() + sum((op(CALLOC, 3) + [k, k] for k in (0, 1, 3, 5, 9)), []) + \
    op(CALLOC, 3) + [2] + failing(0) + failing(1) + op(CALLOC, 0) + [4] + failing(3)
seeds["realloc-grow-shrink"] = hdr() + malloc(0, tiny(10)) + realloc_rel(0, 0) + \
    realloc_rel(0, 0) + realloc_rel(0, 2, 77) + realloc_rel(0, 1) + realloc_rel(0, 3, 5) + \
    realloc_abs(0, small(60000)) + realloc_abs(0, pages(40)) + realloc_rel(0, 0) + \
    realloc_rel(0, 1) + realloc_abs(0, pbs(2)) + realloc_abs(0, tiny(3)) + free(0)
seeds["realloc-pages-inplace"] = hdr() + malloc(0, pages(4)) + realloc_abs(0, pages(8)) + \
    realloc_abs(0, pages(12, 5)) + realloc_abs(0, pages(6, 1)) + malloc(1, pages(4)) + \
    realloc_abs(0, pages(100)) + realloc_abs(0, pbs(2)) + realloc_abs(0, pbs(4, 6)) + \
    realloc_abs(0, pbs(1, 1)) + free(1) + free(0)
seeds["realloc-zero-null-fail"] = hdr() + realloc_abs(0, tiny(40)) + realloc_abs(0, zero()) + \
    realloc_abs(1, zero()) + realloc_abs(2, failing(1)) + malloc(3, cls(30)) + \
    realloc_abs(3, failing(0)) + realloc_abs(3, failing(2)) + realloc_abs(3, failing(4)) + \
    usable(3) + malloc(4, pages(9)) + realloc_abs(4, failing(6)) + usable(4) + free(3) + free(4)
seeds["reallocarray"] = hdr() + malloc(0, tiny(64)) + op(REALLOCARRAY, 2) + [0, 4] + tiny(64) + \
    op(REALLOCARRAY, 3) + [0, 0] + op(REALLOCARRAY, 3) + [0, 1] + op(REALLOCARRAY, 0) + [0] + \
    pages(3) + op(REALLOCARRAY, 3) + [1, 3] + op(REALLOCARRAY, 2) + [0, 0] + tiny(1) + free(0)
def aligned(slot, fn, al, size): return op(ALIGNED, fn) + [slot] + al + size
seeds["aligned-all"] = hdr() + sum((aligned(fn * 5 + j, fn, al_small(lg), tiny(100))
    for fn in range(5) for j, lg in enumerate((0, 3, 6, 12, 21))), [])
seeds["aligned-big"] = hdr() + aligned(0, 0, al_big(22), pbs(1)) + aligned(1, 1, al_big(26), tiny(5)) + \
    aligned(2, 2, al_big(30), tiny(1)) + aligned(3, 0, al_small(13), pages(3)) + \
    aligned(4, 2, al_small(17), cls(60)) + free(0, 2) + free(1) + free(2) + free(3) + free(4)
seeds["aligned-invalid"] = hdr() + sum((aligned(k, fn, al_bad(k), tiny(8))
    for fn in (0, 1, 2) for k in range(8)), []) + \
    sum((aligned(k, fn, al_huge(k), tiny(8)) for fn in (0, 1, 2) for k in range(0, 8, 3)), []) + \
    sum((aligned(k, fn, al_small(4), failing(k)) for fn in range(5) for k in range(0, 8, 2)), [])
seeds["pvalloc-valloc"] = hdr() + aligned(0, 3, [0], tiny(0)) + aligned(1, 4, [0], tiny(0)) + \
    aligned(2, 4, [0], pages(2, 5)) + aligned(3, 4, [0], failing(0)) + aligned(4, 3, [0], failing(2)) + \
    aligned(5, 4, [0], failing(1)) + usable(1) + usable(2) + free(0) + free(1) + free(2)
def class_alloc(slot, c, flags, size): return op(CLASS_ALLOC, c) + [slot, flags] + size
seeds["class-alloc"] = hdr() + sum((class_alloc(c, c, f, cls(40)) for c in range(8) for f in (0, 2)), []) + \
    class_alloc(16, 1, 2, pages(20)) + class_alloc(17, 1, 1, pbs(2)) + class_alloc(18, 0, 3, pages(3)) + \
    class_alloc(19, 1, 0, failing(0)) + class_alloc(20, 0, 1, tiny(9))
seeds["set-class"] = hdr(2) + sum((op(SET_CLASS) + [c] + malloc(c, cls(10 + c)) for c in range(8)), []) + \
    op(MISC, 3) + switch(1) + op(SET_CLASS) + [1] + malloc(0, pages(2)) + send(0) + switch(0) + \
    recv(1, 0, 2) + op(SET_CLASS) + [0] + free(1)
def pages_op(slot, c, x, size, al=None):
    return op(PAGES, c) + [slot, x] + ((al or [0]) if (x >> 2) >= 48 else []) + size
seeds["pages-alloc"] = hdr() + sum((pages_op(c, c, 0, pages(2)) for c in range(8)), []) + \
    pages_op(8, 1, 2, pages(7)) + pages_op(9, 0, 1, pbs(2)) + pages_op(10, 2, 200, tiny(5), al_small(16)) + \
    pages_op(11, 1, 202, pages(3), al_big(23)) + pages_op(12, 1, 200, tiny(1), al_bad(3)) + \
    pages_op(13, 1, 200, tiny(1), al_huge(0)) + pages_op(14, 0, 0, failing(0)) + \
    pages_op(15, 3, 0, tiny(0)) + usable(8) + usable(9) + free(8) + free(9) + realloc_abs(10, tiny(3))
seeds["cross-thread-free"] = hdr(2) + sum((malloc(i, cls(i * 9)) for i in range(8)), []) + \
    sum((send(i) for i in range(8)), []) + switch(1) + sum((recv(i, 0, 0) for i in range(4)), []) + \
    sum((recv(i, 0, 2) for i in range(4)), []) + malloc(9, cls(30)) + send(9) + switch(0) + \
    recv(0, 0, 0) + switch(1) + sum((free(i) for i in range(4)), [])
seeds["cross-thread-realloc"] = hdr(3) + malloc(0, cls(12)) + malloc(1, pages(5)) + \
    malloc(2, pbs(1)) + send(0) + send(1) + send(2) + switch(2) + recv(0, 0, 1, cls(50)) + \
    recv(1, 0, 1, pages(9)) + recv(2, 0, 1, tiny(4)) + send(0) + send(1) + switch(1) + \
    recv(3, 1, 2) + recv(4, 0, 4) + free(3)
seeds["mailbox-leftover"] = hdr(4) + sum((switch(t) + sum((malloc(i, cls(t * 10 + i)) + send(i)
    for i in range(4)), []) for t in range(4)), [])
seeds["span-churn-xthread"] = hdr(2) + sum((op(BURST, 0) + [60] + cls(3) for _ in range(2)), []) + \
    sum((malloc(i, cls(5)) for i in range(32)), []) + sum((send(i) for i in range(16)), []) + \
    switch(1) + sum((recv(i, 0, 0) for i in range(16)), []) + switch(0) + \
    sum((malloc(i, cls(5)) for i in range(16)), [])
seeds["trim"] = hdr(1, trim=True) + malloc(0, pbs(3)) + malloc(1, pages(50)) + free(0) + \
    op(TRIM, 0) + op(TRIM, 1) + op(TRIM, 2) + op(TRIM, 3) + malloc(0, pbs(1)) + free(1) + \
    op(TRIM, 1) + usable(0)
seeds["trim-threads"] = hdr(2, trim=True) + malloc(0, cls(20)) + send(0) + switch(1) + \
    op(TRIM, 0) + recv(0, 0, 2) + op(TRIM, 1) + free(0) + op(TRIM, 0)
seeds["misc"] = hdr() + malloc(0, tiny(7)) + sum((misc(m) for m in range(16) if m not in (8, 9)), [])
seeds["late-free"] = hdr(2) + malloc(0, cls(33)) + misc(8, 0) + switch(1) + malloc(1, pages(3)) + \
    misc(8, 1) + malloc(2, tiny(3)) + misc(8, 2)
seeds["fork"] = hdr(2) + malloc(0, cls(20)) + malloc(1, pages(4)) + misc(9, 0, 0) + switch(1) + \
    malloc(2, tiny(50)) + misc(9, 0, 1) + free(2)
seeds["fork-concurrent"] = hdr(3, concurrent=True) + burst_keep(100, cls(4)) + misc(9, 0, 3) + \
    switch(1) + burst_keep(200, cls(6)) + send_bulk(100) + switch(2) + recv_bulk(50) + misc(9, 0, 2)
seeds["bulk-xthread"] = hdr(2) + burst_keep(256, cls(1)) + burst_keep(256, cls(1)) + send_bulk(256) + \
    switch(1) + recv_bulk(256, 0) + switch(0) + burst_keep(200, cls(1)) + send_bulk(150) + \
    switch(1) + recv_bulk(100, 2) + recv_bulk(50, 1, cls(2)) + bulk_free(60, 2) + switch(0) + bulk_free(200, 3)
seeds["bulk-orders"] = hdr() + burst_keep(255, cls(10), True) + bulk_free(50, 0) + bulk_free(50, 1) + \
    bulk_free(50, 2, 1) + bulk_free(50, 3, 4) + burst_keep(100, tiny(0)) + bulk_free(256)
seeds["libc-names"] = hdr() + malloc(0, cls(9), 1) + op(CALLOC, 4) + [1] + tiny(40) + \
    realloc_abs(0, cls(30), 8) + aligned(2, 5, al_small(8), tiny(9)) + aligned(3, 6, al_small(12), tiny(9)) + \
    aligned(4, 7, [0], tiny(9)) + aligned(5, 8, [0], tiny(9)) + free(0, 4) + free(1, 4) + free(2, 4)
seeds["giant"] = hdr() + malloc(0, giant(5)) + realloc_abs(0, tiny(100)) + op(CALLOC, 0) + [1] + giant(1) + \
    usable(1) + free(1)
seeds["burst"] = hdr() + sum((op(BURST, m) + [n] + s for m, n, s in
    ((0, 63, cls(2)), (1, 20, cls(40)), (2, 33, tiny(17)), (3, 8, small(40000)),
     (4, 10, cls(9)), (13, 15, pow2(10)))), [])
seeds["huge"] = hdr() + malloc(0, huge(10)) + realloc_abs(0, huge(40)) + free(0) + \
    op(CALLOC, 0) + [1] + huge(3) + free(1)
def h_alloc(slot, x): return misc(12, slot, x)
def h_resize(slot, x): return misc(13, slot, x)
def h_pin(slot, on): return misc(14, slot, 1 if on else 0)
def h_compact(in_section=False): return misc(15, 0, 1 if in_section else 0)
seeds["handles"] = hdr() + sum((h_alloc(i, x) for i, x in enumerate((0, 1, 7, 80, 200, 249, 250, 254))), []) + \
    h_resize(0, 200) + h_resize(0, 255) + h_pin(1, True) + h_pin(1, True) + h_resize(1, 50) + \
    h_compact() + h_compact(True) + h_pin(1, False) + h_resize(2, 3) + h_alloc(3, 9) + \
    h_compact() + h_pin(1, False) + h_resize(1, 120) + h_alloc(0, 2)
seeds["handles-threads"] = hdr(2, concurrent=True) + sum((h_alloc(i, 17 * i) for i in range(12)), []) + \
    sum((h_alloc(i, 3) for i in range(0, 12, 2)), []) + h_compact() + switch(1) + \
    sum((h_alloc(i, 40 + i) for i in range(10)), []) + h_pin(4, True) + h_compact() + \
    sum((h_resize(i, 200 - i) for i in range(10)), []) + h_compact()
seeds["big-runs"] = hdr() + malloc(0, big(0x300000)) + malloc(1, big(0x812345)) + \
    realloc_rel(1, 1) + realloc_rel(0, 0) + free(0) + free(1)
seeds["concurrent-2"] = hdr(2, concurrent=True) + sum((malloc(i, cls(i * 3)) + send(i)
    for i in range(12)), []) + switch(1) + sum((recv(i, 0, 0) + malloc(i, cls(i)) for i in range(12)), [])
seeds["concurrent-4"] = hdr(4, concurrent=True) + sum((switch(t) + op(BURST, t) + [30] + cls(t * 11) +
    malloc(t, pages(t + 1)) + send(t) + recv(t + 1, 0, t & 1, cls(44)) for t in range(4)), [])
seeds["lockstep-4-interleave"] = hdr(4) + sum((switch(i % 4) + malloc(i % 32, cls(i % 88)) +
    (send(i % 32) if i % 3 == 0 else []) + (recv((i + 7) % 32, i, i & 3, tiny(i)) if i % 5 == 0 else [])
    for i in range(60)), [])
seeds["mixed-1"] = hdr(1) + malloc(0, tiny(200)) + op(CALLOC, 2) + [1, 3] + tiny(30) + \
    realloc_abs(2, pages(2)) + aligned(3, 0, al_small(12), tiny(9)) + usable(3) + \
    class_alloc(4, 1, 2, tiny(33)) + pages_op(5, 0, 2, pages(1)) + free(5) + op(TRIM, 2) + \
    free(0) + free(1, 1) + free(2, 2) + free(3, 3)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(bytes(b & 0xff for b in data))
print(f"wrote {len(seeds)} seeds to {out}")
