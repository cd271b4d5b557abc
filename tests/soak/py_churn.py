#!/usr/bin/env python3
"""py_churn.py SEED SLOTS — the python3 workload of the soak (tests/soak/soak.py
runs it under LD_PRELOAD=libspbmalloc.so with PYTHONMALLOC=malloc, so every
object goes through malloc).

It keeps SLOTS live objects (str, bytes, list of ints, dict, tuple of str,
nested list of dicts) whose (kind, size) pairs are a fixed multiset drawn
once from SEED: every round gives them out again in a fresh random
permutation, so a slot's size changes each round while the total stays the
same at every round's end (the soak compares RSS at round ends). A round
replaces every slot with a new object, deletes about 15 % of them first and
recreates those at the end, rebuilds a quarter of the live objects from
their seeds and compares them with ==, and round-trips some through json
and repr. The round's digest covers what was read back from the stored
objects, so it is the same with and without spbmalloc only if no object was
corrupted; the soak checks it against a run without the library.

Commands on stdin, one a line; one answer line each on stdout:
  round K   rounds run in order 0, 1, 2...  -> "done K DIGEST OPS"
  verify    rebuild every live object, compare -> "verified COUNT TOTALSIZE"
  quit      -> exit 0
A mismatch prints "FAIL what" and exits 3.
"""
import base64
import hashlib
import json
import math
import random
import struct
import sys
import zlib

KINDS = ("str", "bytes", "list", "dict", "tuple", "nested")


def gen(kind, size, seed):
    """A new object of about size bytes of memory, the same for the same seed."""
    rng = random.Random(seed)
    if kind == "str":
        return base64.b64encode(rng.randbytes(size * 3 // 4 + 3)).decode()[:size]
    if kind == "bytes":
        return rng.randbytes(size)
    if kind == "list":
        k = max(1, size // 40)
        return list(struct.unpack(f"<{k}I", rng.randbytes(4 * k)))
    if kind == "dict":
        k = max(1, size // 130)
        vals = struct.unpack(f"<{k}I", rng.randbytes(4 * k))
        return {f"k{i}:{v:x}": v for i, v in enumerate(vals)}
    if kind == "tuple":
        k = max(1, size // 90)
        raw = base64.b64encode(rng.randbytes(k * 24)).decode()
        return tuple(raw[i * 32:(i + 1) * 32] for i in range(k))
    k = max(1, size // 600)
    out = []
    for i in range(k):
        a, b = struct.unpack("<II", rng.randbytes(8))
        out.append({"i": i, "a": a, "s": f"{b:08x}" * (1 + a % 7),
                    "l": [a % 1000 + j * b for j in range(1 + b % 9)]})
    return out


def fingerprint(obj):
    """A crc of the object's content, read from the object itself."""
    if isinstance(obj, bytes):
        return zlib.crc32(obj)
    if isinstance(obj, str):
        return zlib.crc32(obj.encode())
    return zlib.crc32(repr(obj).encode())


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(3)


class Churn:
    def __init__(self, seed, slots):
        self.seed = seed
        rng = random.Random(seed)
        lo, hi = math.log(16), math.log(64 << 10)
        self.shapes = [(KINDS[rng.randrange(len(KINDS))], int(math.exp(rng.uniform(lo, hi))))
                       for _ in range(slots)]
        self.store = {}
        self.model = {}            # slot -> (kind, size, seed)
        self.next_round = 0

    def objseed(self, slot, ver):
        return (self.seed * 1000003 + slot) * 1000033 + ver

    def put(self, slot, shape, ver):
        kind, size = shape
        s = self.objseed(slot, ver)
        self.store[slot] = gen(kind, size, s)
        self.model[slot] = (kind, size, s)

    def check(self, slot, h):
        obj = self.store[slot]
        if obj != gen(*self.model[slot]):
            fail(f"slot {slot} ({self.model[slot][0]}, {self.model[slot][1]} B) differs from "
                 "its rebuild")
        h.update(b"%d:%d;" % (slot, fingerprint(obj)))

    def round(self, k):
        if k != self.next_round:
            fail(f"round {k} asked, {self.next_round} expected")
        self.next_round += 1
        rng = random.Random(self.seed * 7919 + k)
        perm = self.shapes[:]
        rng.shuffle(perm)
        order = list(range(len(perm)))
        rng.shuffle(order)
        h = hashlib.sha256(b"round %d;" % k)
        deleted = []
        ops = 0
        for idx, slot in enumerate(order):
            ver = (k << 24) | idx
            if slot in self.store and rng.random() < 0.15:
                del self.store[slot]
                del self.model[slot]
                deleted.append(slot)
            else:
                self.put(slot, perm[slot], ver)
            ops += 1
            if idx % 4 == 0:
                v = order[rng.randrange(len(order))]
                if v in self.store:
                    self.check(v, h)
                    ops += 1
            if idx % 64 == 0:
                # Temporaries of assorted sizes: json and sorting round trips.
                v = order[rng.randrange(len(order))]
                obj = self.store.get(v)
                if isinstance(obj, (list, dict)):
                    if json.loads(json.dumps(obj)) != obj:
                        fail(f"slot {v}: json round trip differs")
                    h.update(b"j%d;" % len(json.dumps(obj)))
                tmp = {f"t{i}": str(i) * (1 + i % 50) for i in range(rng.randrange(10, 400))}
                srt = sorted(tmp.values(), key=len)
                h.update(b"t%d:%d;" % (len(srt), sum(map(len, srt))))
                ops += 2
        for i, slot in enumerate(deleted):
            self.put(slot, perm[slot], (k << 24) | (len(order) + i))
            ops += 1
        h.update(b"live %d;" % len(self.store))
        return h.hexdigest()[:24], ops

    def verify(self):
        h = hashlib.sha256()
        total = 0
        for slot in sorted(self.store):
            self.check(slot, h)
            total += self.model[slot][1]
        return len(self.store), total


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    churn = Churn(int(sys.argv[1]), int(sys.argv[2]))
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "round":
            k = int(words[1])
            digest, ops = churn.round(k)
            print(f"done {k} {digest} {ops}", flush=True)
        elif words[0] == "verify":
            n, total = churn.verify()
            print(f"verified {n} {total}", flush=True)
        elif words[0] == "quit":
            return 0
        else:
            fail(f"unknown command {line.strip()!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
