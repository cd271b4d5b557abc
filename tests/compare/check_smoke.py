#!/usr/bin/env python3
"""Smoke test of benchmarks/compare: run it in --smoke size and check that
runs.tsv has one good row per workload and allocator, and that summary.md
has the ratio tables, a row per workload and the fragmentation phases; and
issue 11's rows: a row per small program (or a skip with its reason), the
scaling rows at 1 and 2 threads in both modes, the sparse buffers' reserved
and touched figures, and their sections and targets in summary.md."""
import argparse
import csv
import os
import shutil
import subprocess
import sys

C_WORKLOADS = ["larson", "xmalloc", "cache-scratch", "mstress", "frag",
               "hugecov", "servermix", "sparse"]
REAL = ["redis", "sqlite"]
SMALL = ["python3", "perl", "git", "sort", "sqlite3"]
SCALING = ["scaling-%s-t%d" % (m, t) for m in ("touch", "bare") for t in (1, 2)]
MUST = ["spbmalloc", "glibc"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def one_row(rows, w, al):
    got = [r for r in rows if r["workload"] == w and r["allocator"] == al]
    if len(got) != 1:
        fail("%d rows for %s/%s, expected 1" % (len(got), w, al))
    return got[0]


def extra(r):
    return dict(x.split("=", 1) for x in r["extra"].split(";") if "=" in x)


def check_issue11_rows(rows, allocs):
    ran = 0
    for prog in SMALL:
        for al in allocs:
            r = one_row(rows, "smallprog-" + prog, al)
            if r["status"] == "skipped":
                if "not found" not in r["note"]:
                    fail("smallprog-%s skipped without a reason" % prog)
                print("note: smallprog-%s skipped: %s" % (prog, r["note"]))
                continue
            if r["status"] != "ok":
                fail("smallprog-%s under %s: status %s (%s)" % (
                    prog, al, r["status"], r["note"]))
            x = extra(r)
            rss = float(r["peak_rss_kb"])
            if not 100 <= rss <= 10 * 1048576:
                fail("smallprog-%s under %s: peak RSS %s KiB" % (prog, al, rss))
            if not float(x["rss_min_kb"]) <= rss <= float(x["rss_max_kb"]):
                fail("smallprog-%s under %s: median RSS outside min-max" %
                     (prog, al))
            if int(r["ops"]) < 1 or float(x["wall_ms"]) <= 0:
                fail("smallprog-%s under %s: no starts or no time" % (prog, al))
            ran += 1
    if not ran:
        fail("no small program ran")
    for w in SCALING:
        t = int(w.rsplit("-t", 1)[1])
        for al in allocs:
            r = one_row(rows, w, al)
            if r["status"] != "ok" or float(r["ops_per_s"]) <= 0:
                fail("%s under %s: status %s, %s pairs/s" % (
                    w, al, r["status"], r["ops_per_s"]))
            if extra(r).get("threads") != str(t):
                fail("%s under %s ran %s threads" % (w, al,
                                                     extra(r).get("threads")))
            if float(r["ops"]) != t * 20000:  # smoke size: steps=20000
                fail("%s under %s: %s pairs, expected %d" % (w, al, r["ops"],
                                                            t * 20000))
    for al in allocs:
        x = extra(one_row(rows, "sparse", al))
        res, tch = float(x.get("reserved_kb", 0)), float(x.get("touched_kb", 0))
        if not 16 * 1024 <= res <= 18 * 1024:  # smoke size: mb=16
            fail("sparse under %s: reserved %s KiB for mb=16" % (al, res))
        if not 0 < tch < res:
            fail("sparse under %s: touched %s KiB of %s" % (al, tch, res))


def table_after(md, title):
    """The first markdown table after a line starting with title: header
    cells and {first cell: cells}."""
    lines = []
    for l in md.split(title, 1)[1].splitlines():
        if l.startswith("|"):
            lines.append(l)
        elif lines:
            break
    cells = [[c.strip() for c in l.strip().strip("|").split("|")]
             for l in lines]
    return cells[0], {c[0]: c for c in cells[2:]}


def check_issue11_summary(md, allocs):
    for title in ("## Issue 11 targets",
                  "## Issue 11: small-program peak RSS",
                  "## Issue 11: 1→N thread scaling",
                  "## Issue 11: sparse buffers"):
        if title not in md:
            fail("summary.md lacks '%s'" % title)
    head, body = table_after(md, "## Issue 11 targets")
    for w in ("smallprog", "scaling", "sparse"):
        if w not in body or not body[w][1] or not body[w][2]:
            fail("issue 11 targets table lacks %s" % w)
        if not body[w][2].startswith(("met", "not met", "touch")):
            fail("issue 11 target for %s says '%s'" % (w, body[w][2]))
    if md.count("Target (issue 11): ") != 3:
        fail("expected 3 'Target (issue 11)' lines")
    head, body = table_after(md, "Peak RSS ratio to glibc (lower is smaller):")
    gi = head.index("glibc")
    for prog, cells in body.items():
        if cells[gi] not in ("1.00", "n/a"):
            fail("smallprog %s: glibc's ratio to itself is %s" % (prog,
                                                                  cells[gi]))
    for mode in ("### touch", "### bare"):
        head, body = table_after(md, mode)
        if not head[-1].startswith("scaling 2/1"):
            fail("scaling table %s has no scaling column: %s" % (mode, head))
        for al in allocs:
            if al not in body or float(body[al][-1]) <= 0:
                fail("scaling %s: no ratio for %s" % (mode, al))
    head, body = table_after(md, "## Issue 11: sparse buffers")
    ri = head.index("RSS / reserved")
    for al in allocs:
        if al not in body or not float(body[al][ri]) > 0:
            fail("sparse: no RSS / reserved for %s" % al)


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
    check_issue11_rows(rows, allocs)
    if p.returncode != 0:
        fail("compare exited %d" % p.returncode)
    with open(os.path.join(a.out, "summary.md")) as f:
        md = f.read()
    check_issue11_summary(md, allocs)
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
