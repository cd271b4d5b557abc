# alloc_heavy.py — an allocation-heavy Python workload with deterministic
# output (run with PYTHONHASHSEED=0): dicts, lists, strings, tuples, sets,
# json round trips, object churn and a big bytearray. Prints digests.
import hashlib
import json
import sys


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def main():
    rng = 12345

    def rand():
        nonlocal rng
        rng = (rng * 6364136223846793005 + 1442695040888963407) & ((1 << 64) - 1)
        return rng >> 33

    # dict churn: insert, update, delete; values of many sizes
    d = {}
    for i in range(200000):
        k = "k%d" % (rand() % 50000)
        if i % 7 == 0 and k in d:
            del d[k]
        else:
            d[k] = "v" * (rand() % 200) + str(i)
    print("dict", len(d), digest(sorted(d.items())[:2000]))

    # lists of lists, sorting, slicing
    rows = [[rand() % 1000 for _ in range(rand() % 50)] for _ in range(20000)]
    rows.sort(key=lambda r: (len(r), sum(r)))
    print("lists", len(rows), sum(map(len, rows)), digest(rows[::97]))

    # strings: join, split, replace, format
    text = " ".join("word%d" % (rand() % 3000) for _ in range(300000))
    words = text.split()
    counts = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    print("strings", len(text), len(counts), top[:3])
    s = text.replace("word1", "W-ONE").upper()
    print("replace", len(s), hashlib.sha256(s.encode()).hexdigest()[:16])

    # json round trips of nested structures
    doc = {"items": [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (j % 13) for j in range(i % 17)],
                      "attrs": {"w": i * 3, "h": i * 7 % 101}} for i in range(20000)]}
    for _ in range(3):
        doc = json.loads(json.dumps(doc))
        doc["items"] = doc["items"][1:] + doc["items"][:1]
    print("json", len(doc["items"]), digest(doc["items"][:500]))

    # sets and tuples, object churn with classes
    class Node:
        __slots__ = ("k", "nxt")

        def __init__(self, k, nxt):
            self.k = k
            self.nxt = nxt

    head = None
    for i in range(200000):
        head = Node(i, head if i % 1000 else None)
    n = 0
    while head:
        n += head.k
        head = head.nxt
    st = {(rand() % 5000, rand() % 7) for _ in range(100000)}
    print("objects", n, len(st))

    # large buffers
    buf = bytearray()
    for i in range(2000):
        buf += bytes([i % 251]) * (rand() % 4096)
    print("bytes", len(buf), hashlib.sha256(bytes(buf)).hexdigest()[:16])
    return 0


if __name__ == "__main__":
    sys.exit(main())
