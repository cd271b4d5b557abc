#!/usr/bin/env python3
"""run_preload.py CASE LIBSPBMALLOC WORKDIR [SPBSTAT] — run a real program twice, once
as is and once with LD_PRELOAD=libspbmalloc.so, and require:

  * the same exit status, the same stdout (and for sort/xz the same output
    files), and the same stderr once spbmalloc's own lines are removed;
  * proof that spbmalloc served the preloaded run: with SPBMALLOC_STATS=1
    the library prints its exit summary on stderr ("spbmalloc: allocations
    N served, ..."), which only libspbmalloc.so's destructor can write and
    whose N counts the malloc-family calls it served; the N summed over
    the case's processes must reach the case's minimum.
    Programs that close stderr on their way out (coreutils' close_stdout,
    xz's tuklib_exit: atexit handlers run before the library's destructor)
    lose that line; for them the driver samples the running process's
    stats segment with `spbstat --json PID` every 20 ms, and the largest
    malloc_alloc seen counts as proof instead.

Cases: python, perl, git, sqlite, sort, xz. Exit 0 = pass, 1 = fail,
77 = skipped (a program is missing and cannot be installed).
"""
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
SERVED_RE = re.compile(r"^spbmalloc: allocations\s+(\d+) served", re.M)


def which_or_install(prog, package):
    path = shutil.which(prog)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{prog} missing: apt-get install -y {package}")
        subprocess.run(["apt-get", "install", "-y", "-q", package],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = shutil.which(prog)
        if path:
            return path
    print(f"SKIPPED: {prog} is not installed and cannot be installed "
          f"(package {package}; not root or apt-get failed)")
    sys.exit(SKIP)


def base_env(work):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SPBMALLOC_") and k != "LD_PRELOAD"}
    env.update({"LC_ALL": "C", "TZ": "UTC", "HOME": work, "PYTHONHASHSEED": "0",
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
                "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000",
                "GIT_COMMITTER_NAME": "Test Committer",
                "GIT_COMMITTER_EMAIL": "committer@example.com",
                "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000"})
    return env


def gen_lines(path, mbytes, seed):
    """A deterministic text file of about mbytes MiB."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    target = mbytes << 20
    size = 0
    with open(path, "w") as f:
        while size < target:
            chunk = []
            for _ in range(10000):
                line = "%08x %s %d %s\n" % (rng.getrandbits(32), rng.choice(words),
                                            rng.randrange(10 ** 6), "x" * rng.randrange(40))
                chunk.append(line)
                size += len(line)
            f.write("".join(chunk))


# Each case: (setup(work) -> list of steps, minimum allocations served).
# A step is (argv, stdin_path or None, stdout_path or None, output files to
# compare).

def case_python(work):
    # PYTHONMALLOC=malloc (both runs): CPython's pymalloc serves objects up
    # to 512 bytes from its own mmap'ed arenas; this sends every object
    # allocation through malloc, so the script really exercises spbmalloc.
    os.environ["PYTHONMALLOC"] = "malloc"
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else which_or_install("python3", "python3")
    return [([py, os.path.join(HERE, "alloc_heavy.py")], None, None, [])], 500000


def case_perl(work):
    perl = which_or_install("perl", "perl")
    return [([perl, os.path.join(HERE, "hash_churn.pl")], None, None, [])], 100000


GIT_SCRIPT = r"""
set -e
git init -q -b main repo
cd repo
seq 1 30000 > numbers.txt
i=0
while [ $i -lt 60 ]; do printf 'file %d\nline two of %d\n' $i $i > f$i.txt; i=$((i+1)); done
git add .
git commit -q -m "first commit"
sed -i 's/1/one/g' numbers.txt
rm f7.txt
mkdir sub && echo nested > sub/n.txt
git add -A
git commit -q -m "second commit"
git checkout -q -b topic
echo topic >> f3.txt
git commit -q -am "topic commit"
git checkout -q main
git merge -q --no-edit --no-ff topic
git log --stat --format='%H %an <%ae> %ad %s' --date=iso
git rev-list --count HEAD
git diff HEAD~2 --stat
git gc -q
git fsck --full --no-progress
git log -p | sha256sum
git count-objects -v | grep -v size
"""


def case_git(work):
    which_or_install("git", "git")
    with open(os.path.join(work, "git.sh"), "w") as f:
        f.write(GIT_SCRIPT)
    return [(["sh", os.path.join(work, "git.sh")], None, None, [])], 2000


SQL = """
PRAGMA journal_mode=MEMORY;
CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b TEXT, c REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, (i * 7919) % 1000, printf('row-%08d-%x-%s', i, (i * 2654435761) % 4294967296,
       substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26)), i * 0.5 FROM n;
CREATE INDEX t_a ON t(a);
CREATE INDEX t_b ON t(b);
SELECT a, count(*), sum(length(b)), printf('%.1f', avg(c)) FROM t GROUP BY a ORDER BY a LIMIT 15;
UPDATE t SET b = b || '-updated' WHERE a % 3 = 0;
DELETE FROM t WHERE a % 7 = 0;
CREATE TABLE u AS SELECT a, group_concat(id, ',') AS ids FROM t WHERE id % 11 = 0 GROUP BY a;
SELECT count(*), sum(length(ids)) FROM u;
SELECT t.a, count(*) FROM t JOIN u ON t.a = u.a WHERE t.id % 5 = 0 GROUP BY t.a ORDER BY 2 DESC, 1 LIMIT 10;
SELECT b FROM t ORDER BY b DESC LIMIT 5;
SELECT count(DISTINCT substr(b, 1, 8)), max(length(b)) FROM t;
VACUUM;
PRAGMA integrity_check;
SELECT count(*), sum(a), total(c) FROM t;
"""


def case_sqlite(work):
    sq = which_or_install("sqlite3", "sqlite3")
    sql = os.path.join(work, "workload.sql")
    with open(sql, "w") as f:
        f.write(SQL)
    return [([sq, "db.sqlite"], sql, None, [])], 100000


def case_sort(work):
    srt = which_or_install("sort", "coreutils")
    src = os.path.join(work, "input.txt")
    if not os.path.exists(src):
        gen_lines(src, 50, 1)
    out = os.path.join(work, "sorted.txt")
    out2 = os.path.join(work, "sorted_k.txt")
    return [([srt, "--parallel=2", "-o", out, src], None, None, [out]),
            ([srt, "-S", "8M", "-k2,2", "-k3,3n", "-s", "-o", out2, src], None, None, [out2])], 5


def case_xz(work):
    xz = which_or_install("xz", "xz-utils")
    src = os.path.join(work, "data.txt")
    if not os.path.exists(src):
        gen_lines(src, 8, 2)
    comp = os.path.join(work, "data.txt.xz")
    back = os.path.join(work, "data.back")
    return [([xz, "-T2", "--block-size=1MiB", "-3", "-c", src], None, comp, [comp]),
            ([xz, "-d", "-T2", "-c", comp], None, back, [back])], 10


CASES = {"python": case_python, "perl": case_perl, "git": case_git, "sqlite": case_sqlite,
         "sort": case_sort, "xz": case_xz}


def sample_segment(pid, spbstat):
    """malloc_alloc of a live process's stats segment, or 0."""
    if not spbstat or not os.path.exists(f"/dev/shm/spbmalloc.{pid}"):
        return 0
    try:
        p = subprocess.run([spbstat, "--json", str(pid)], capture_output=True, timeout=10)
        return int(json.loads(p.stdout)["counters"]["malloc_alloc"])
    except (subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return 0


def run_steps(steps, env, rundir, spbstat=None):
    """Run the steps in a fresh rundir; return (results, file digests).
    A result is (rc, stdout, stderr, largest sampled malloc_alloc)."""
    shutil.rmtree(rundir, ignore_errors=True)
    os.makedirs(rundir)
    for _, _, _, outputs in steps:
        for o in outputs:
            if os.path.exists(o):
                os.remove(o)
    results, digests = [], []
    for argv, stdin_path, stdout_path, outputs in steps:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        outf = open(stdout_path or os.path.join(rundir, ".stdout"), "w+b")
        errf = open(os.path.join(rundir, ".stderr"), "w+b")
        p = subprocess.Popen(argv, cwd=rundir, env=env, stdin=stdin, stdout=outf, stderr=errf)
        sampled = 0
        deadline = time.monotonic() + 240
        while p.poll() is None and time.monotonic() < deadline:
            sampled = max(sampled, sample_segment(p.pid, spbstat))
            time.sleep(0.02)
        if p.poll() is None:
            p.kill()
        p.wait()
        if stdin_path:
            stdin.close()
        out = b""
        if not stdout_path:
            outf.seek(0)
            out = outf.read()
        outf.close()
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        errf.close()
        results.append((p.returncode, out, err, sampled))
        for o in outputs:
            h = hashlib.sha256()
            with open(o, "rb") as f:
                for blk in iter(lambda: f.read(1 << 20), b""):
                    h.update(blk)
            digests.append((o, h.hexdigest(), os.path.getsize(o)))
    return results, digests


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in CASES:
        print(__doc__)
        return 2
    case, lib, work = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    spbstat = sys.argv[4] if len(sys.argv) == 5 else None
    if case in ("sort", "xz") and not (spbstat and os.access(spbstat, os.X_OK)):
        print(f"SKIPPED: {case} closes stderr before spbmalloc's exit summary; its proof "
              "needs spbstat (build with SPB_BUILD_TOOLS=ON)")
        return SKIP
    work = os.path.join(work, case)
    os.makedirs(work, exist_ok=True)
    steps, min_served = CASES[case](work)
    env = base_env(work)
    penv = dict(env, LD_PRELOAD=lib, SPBMALLOC_STATS="1", SPBMALLOC_STATS_INTERVAL_MS="20",
                SPBMALLOC_STATSEG_DELAY_MS="0")
    rundir = os.path.join(work, "run")

    base, base_files = run_steps(steps, env, rundir)
    pre, pre_files = run_steps(steps, penv, rundir, spbstat)

    ok = True
    served = 0
    sampled = 0
    for i, ((rc0, out0, err0, _), (rc1, out1, err1, smp)) in enumerate(zip(base, pre)):
        name = " ".join(os.path.basename(a) for a in steps[i][0][:2])
        if rc0 != 0:
            print(f"step {i} ({name}): fails without spbmalloc too (rc {rc0}):\n{err0}")
            ok = False
        if rc0 != rc1:
            print(f"step {i} ({name}): exit status {rc0} without, {rc1} with spbmalloc\n{err1}")
            ok = False
        if out0 != out1:
            print(f"step {i} ({name}): stdout differs ({len(out0)} vs {len(out1)} bytes)")
            ok = False
        ours = [l for l in err1.splitlines() if l.startswith("spbmalloc: ")]
        rest = [l for l in err1.splitlines() if not l.startswith("spbmalloc: ")]
        if rest != err0.splitlines():
            print(f"step {i} ({name}): stderr differs:\n--- without\n{err0}\n--- with\n" +
                  "\n".join(rest))
            ok = False
        bad = [l for l in ours if "invalid pointer" in l or "double free" in l or "warning" in l]
        if bad:
            print(f"step {i} ({name}): spbmalloc complained: {bad}")
            ok = False
        n = [int(m) for m in SERVED_RE.findall(err1)]
        served += sum(n)
        sampled = max(sampled, smp)
        print(f"step {i} ({name}): rc {rc1}, stdout {len(out1)} bytes identical={out0 == out1}, "
              f"{len(n)} spbmalloc summaries, {sum(n)} allocations served"
              + (f", stats segment sampled: malloc_alloc {smp}" if smp else ""))
    if base_files != pre_files:
        print(f"output files differ:\n  without: {base_files}\n  with:    {pre_files}")
        ok = False
    else:
        for o, h, size in pre_files:
            print(f"output {os.path.basename(o)}: {size} bytes, sha256 {h[:16]} in both runs")
    proof = max(served, sampled)
    if proof < min_served:
        print(f"spbmalloc served {served} allocations by its exit summaries and {sampled} by "
              f"the live stats segment, expected at least {min_served}: "
              "the program did not run on spbmalloc")
        ok = False
    print(f"{case}: {'ok' if ok else 'FAILED'} ({proof} allocations served by spbmalloc)")
    shutil.rmtree(rundir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
