#!/usr/bin/env python3
"""Smoke test of benchmarks/compare: run it in --smoke size and check that
runs.tsv has one good row per workload and allocator, and that summary.md
has the ratio tables, a row per workload and the fragmentation phases."""
import argparse
import csv
import os
import shutil
import subprocess
import sys

C_WORKLOADS = ["larson", "xmalloc", "cache-scratch", "mstress", "frag",
               "hugecov", "servermix"]
REAL = ["redis", "sqlite"]
MUST = ["spbmalloc", "glibc"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", required=True)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--spb", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    cmd = [sys.executable, a.compare, "--smoke", "--no-install", "--no-build",
           "--allocators", "spbmalloc,glibc,mimalloc", "--spb", a.spb,
           "--bin-dir", a.bin_dir, "--out", a.out]
    print("running: " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=80)
    print(p.stdout)
    tsv = os.path.join(a.out, "runs.tsv")
    if not os.path.exists(tsv):
        fail("no runs.tsv")
    with open(tsv) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    allocs = sorted({r["allocator"] for r in rows})
    for m in MUST:
        if m not in allocs:
            fail("no rows for allocator %s" % m)
    for w in C_WORKLOADS + REAL:
        for al in allocs:
            got = [r for r in rows if r["workload"] == w and r["allocator"] == al]
            if len(got) != 1:
                fail("%d rows for %s/%s, expected 1" % (len(got), w, al))
            r = got[0]
            if w in REAL and r["status"] == "skipped":
                print("note: %s skipped: %s" % (w, r["note"]))
                continue
            if r["status"] != "ok":
                fail("%s under %s: status %s (%s)" % (w, al, r["status"],
                                                      r["note"]))
            if float(r["ops_per_s"]) <= 0 or float(r["peak_rss_kb"]) <= 0:
                fail("%s under %s: no throughput or RSS" % (w, al))
            if r["coverage"] and not 0 <= float(r["coverage"]) <= 1:
                fail("%s under %s: coverage %s" % (w, al, r["coverage"]))
            if w in C_WORKLOADS and r["coverage"] == "":
                fail("%s under %s: no coverage" % (w, al))
        frag = [r for r in rows if r["workload"] == "frag"][0]
        for ph in ("build", "free90", "refill", "freeall"):
            if "phase.%s.rss_kb=" % ph not in frag["extra"]:
                fail("frag has no phase %s" % ph)
    if p.returncode != 0:
        fail("compare exited %d" % p.returncode)
    with open(os.path.join(a.out, "summary.md")) as f:
        md = f.read()
    for title in ("## Time ratio to glibc", "## Peak RSS ratio to glibc",
                  "## Huge-page coverage at peak", "## Fragmentation run",
                  "## Machine"):
        if title not in md:
            fail("summary.md lacks '%s'" % title)
    table = md.split("## Time ratio to glibc")[1].split("##")[0]
    glibc_col = [l for l in table.splitlines() if l.startswith("| workload")][0]
    cols = [c.strip() for c in glibc_col.strip("|").split("|")]
    gi = cols.index("glibc")
    for w in C_WORKLOADS + REAL:
        line = [l for l in table.splitlines() if l.startswith("| %s |" % w)]
        if not line:
            fail("time-ratio table has no row for %s" % w)
        cells = [c.strip() for c in line[0].strip().strip("|").split("|")]
        if len(cells) != len(cols):
            fail("row %s has %d cells, header %d" % (w, len(cells), len(cols)))
        if cells[gi] not in ("1.00", "n/a"):
            fail("glibc's ratio to itself is %s for %s" % (cells[gi], w))
    if shutil.which("gnuplot") and not os.path.exists(
            os.path.join(a.out, "time_ratio.png")):
        fail("gnuplot is installed but time_ratio.png is missing")
    for f in ("machine.txt",):
        if not os.path.exists(os.path.join(a.out, f)):
            fail("no " + f)
    print("ok: %d rows, allocators %s" % (len(rows), ", ".join(allocs)))


if __name__ == "__main__":
    main()
