"""programs.py - the real-program workloads of benchmarks/compare, and the
process plumbing they share with it.

redis: redis-server (the only process preloaded) on a free 127.0.0.1 port,
driven by redis-benchmark in two passes (small values, then the same keys
overwritten with 1 KiB values); throughput is total requests over total
benchmark time; peak RSS and huge-page coverage are sampled from
/proc/<pid> of the server.
sqlite: sqlite3 on an in-memory database running a generated SQL script;
throughput is statements over sqlite3's wall time.
smallprog: one short-lived program on a tiny input (SMALL_PROGRAMS), started
several times; peak RSS of the median start, wall time per start.
Each run_* returns a dict: rc, wall_s, user_s, sys_s, maxrss_kb, kv (the
workload's key=value figures), stderr, and optionally status and note.
Only the Python standard library is used.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def sh(cmd, **kw):
    """Run a helper command; return (rc, stdout+stderr)."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, **kw)
        return p.returncode, p.stdout
    except (OSError, subprocess.SubprocessError) as e:
        return 127, str(e)


# The libc.so.6 that benchmarks/compare found (set by it).
LIBC = [None]


def read_kv_file(path, keys):
    vals = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    vals[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return vals


class Sampler(threading.Thread):
    """Samples /proc/<pid> of a real program: VmHWM and the smaps_rollup
    sample with the most anonymous memory (coverage at the peak)."""

    def __init__(self, pid, period=0.25, child=False):
        super().__init__(daemon=True)
        self.pid, self.period, self.child = pid, period, child
        self.stop = threading.Event()
        self.hwm = self.anon = self.huge = -1

    def sample(self):
        if self.child:
            # pid is wl_exec: follow it to the program it started.
            try:
                with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                    kids = f.read().split()
            except OSError:
                return
            if not kids:
                return
            self.pid, self.child = int(kids[0]), False
        st = read_kv_file("/proc/%d/status" % self.pid, {"VmHWM"})
        sm = read_kv_file("/proc/%d/smaps_rollup" % self.pid,
                          {"Anonymous", "AnonHugePages"})
        if "VmHWM" in st:
            self.hwm = max(self.hwm, st["VmHWM"])
        if sm.get("Anonymous", -1) > self.anon:
            self.anon = sm["Anonymous"]
            self.huge = sm.get("AnonHugePages", 0)

    def run(self):
        while not self.stop.wait(self.period):
            self.sample()


def child_env(lib):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = lib
    return env


def spawn(cmd, env, out, err):
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL)


def reap(p, timeout):
    """Wait for p with wait4 (its rusage is the run's CPU time and max RSS)."""
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def redis_cmd(port, *words, timeout=1.0):
    req = "*%d\r\n" % len(words) + "".join(
        "$%d\r\n%s\r\n" % (len(x), x) for x in words)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req.encode())
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")


def links_other_malloc(exe):
    rc, out = sh(["ldd", exe])
    return rc == 0 and re.search(r"lib(jemalloc|tcmalloc|mimalloc)", out)


def glibc_lib_for(exe, lib):
    """A program linked with its own malloc (Debian's redis links jemalloc)
    runs glibc's malloc, or the preloaded one, only when libc.so.6 is
    preloaded too: it then comes before the program's own malloc library."""
    libc = LIBC[0]
    if libc and links_other_malloc(exe):
        return (lib + " " + libc) if lib else libc
    return lib


def run_redis(ctx, lib, argv):
    server, bench = shutil.which("redis-server"), shutil.which("redis-benchmark")
    if not server or not bench:
        return {"status": "skipped", "note": "redis-server/redis-benchmark "
                "not installed"}
    a = dict(x.split("=", 1) for x in argv)
    port = free_port()
    wdir = tempfile.mkdtemp(dir=ctx.tmp)
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--daemonize", "no", "--dir", wdir,
           "--logfile", os.path.join(wdir, "redis.log")]
    env = child_env(glibc_lib_for(server, lib))
    err = open(os.path.join(wdir, "stderr"), "w+")
    t0 = time.monotonic()
    p = spawn(cmd, env, subprocess.DEVNULL, err)
    for _ in range(200):
        try:
            if "PONG" in redis_cmd(port, "PING"):
                break
        except OSError:
            time.sleep(0.05)
    sampler = Sampler(p.pid)
    sampler.start()
    ops, secs, note = 0, 0.0, ""
    # Small values, then the same keys overwritten with larger ones.
    passes = [("set,get,incr,lpush,rpop,sadd,hset,spop,lrange_100,mset", 64),
              ("set,get,lpush,rpop,hset", 1024)]
    n = int(a.get("requests", "100000"))
    for tests, dsize in passes:
        bcmd = [bench, "-h", "127.0.0.1", "-p", str(port), "--csv", "-q",
                "-n", str(n), "-c", a.get("clients", "50"), "-P", "16",
                "-r", a.get("keyspace", "100000"), "-d", str(dsize),
                "-t", tests]
        rc, out = sh(bcmd, env=child_env(None), timeout=ctx.timeout)
        for line in out.splitlines():
            f = [x.strip('"') for x in line.split(",")]
            if len(f) > 1 and f[0] != "test":
                try:
                    rps = float(f[1])
                except ValueError:
                    continue
                if rps > 0:
                    ops += n
                    secs += n / rps
        if rc != 0:
            note = "redis-benchmark rc=%d" % rc
    sampler.stop.set()
    sampler.sample()
    try:
        redis_cmd(port, "SHUTDOWN", "NOSAVE")
    except OSError:
        p.terminate()
    rc, ru = reap(p, 30)
    wall = time.monotonic() - t0
    err.seek(0)
    stderr = err.read()
    err.close()
    shutil.rmtree(wdir, ignore_errors=True)
    kv = {"ops": str(ops), "seconds": "%.6g" % secs,
          "ops_per_s": "%.6g" % (ops / secs if secs else 0)}
    if sampler.hwm > 0:
        kv["peak_rss_kb"] = str(sampler.hwm)
    if sampler.anon > 0:
        kv["anon_kb"], kv["anon_huge_kb"] = str(sampler.anon), str(sampler.huge)
        kv["coverage"] = "%.4g" % (sampler.huge / sampler.anon)
    ok = rc == 0 and ops > 0 and not note
    return {"rc": rc if ops > 0 else (rc or 1), "wall_s": wall,
            "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "maxrss_kb": sampler.hwm, "kv": kv, "stderr": stderr,
            "note": note, "status": "ok" if ok else "failed"}


def sqlite_script(path, rows, statements):
    """A generated SQL workload: bulk inserts of variable-length rows, many
    single-row statements (parse and plan each), indexes, updates that grow
    and shrink rows, deletes, sorts, grouping and a join."""
    s = ["PRAGMA cache_size=-65536;", "PRAGMA temp_store=MEMORY;",
         "CREATE TABLE t(id INTEGER PRIMARY KEY, k INT, v TEXT);",
         "CREATE TABLE u(id INTEGER PRIMARY KEY, tid INT, w TEXT);",
         "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
         "WHERE x<%d) INSERT INTO t SELECT x, (x*7919)%%1000, "
         "printf('%%.*c', (x*31)%%400+8, 'a') FROM c;" % rows,
         "CREATE INDEX tk ON t(k);", "BEGIN;"]
    for i in range(statements):
        sz = (i * 97) % 600 + 4
        s.append("INSERT INTO u(tid, w) VALUES(%d, printf('%%.*c', %d, 'b'));"
                 % ((i * 7) % rows + 1, sz))
        if i % 10 == 0:
            s.append("UPDATE t SET v = printf('%%.*c', %d, 'c') WHERE id = %d;"
                     % ((i * 13) % 900 + 1, (i * 101) % rows + 1))
    s += ["COMMIT;",
          "UPDATE t SET v = v || v WHERE k % 3 = 0;",
          "DELETE FROM t WHERE k % 5 = 1;",
          "CREATE INDEX tv ON t(v);",
          "SELECT k, count(*), sum(length(v)) FROM t GROUP BY k ORDER BY 3 "
          "DESC LIMIT 5;",
          "SELECT count(*) FROM (SELECT v FROM t ORDER BY v DESC, id);",
          "SELECT count(*), sum(length(w)) FROM u JOIN t ON t.id = u.tid;",
          "SELECT group_concat(substr(v, 1, 2)) IS NOT NULL FROM t;",
          "DROP INDEX tv;", "DELETE FROM t WHERE id % 2 = 0;",
          "VACUUM;", "SELECT count(*) FROM t;"]
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")
    return len(s)


def run_wrapped(ctx, cmd, lib, stdin=None, sample=0.0, prefix=()):
    """Run cmd through wl_exec (rusage of the program alone, LD_PRELOAD set
    for it alone), optionally behind prefix (perf stat) and sampling its
    /proc every `sample` seconds. Returns the result dict of a run."""
    rfile = os.path.join(ctx.tmp, "rusage.txt")
    if os.path.exists(rfile):
        os.unlink(rfile)
    full = list(prefix) + [os.path.join(ctx.bin_dir, "wl_exec"), rfile,
                           lib or ""] + cmd
    with tempfile.TemporaryFile("w+") as out, \
            tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(full, stdin=stdin or subprocess.DEVNULL,
                             stdout=out, stderr=err, env=child_env(None))
        sampler = None
        if sample > 0:
            sampler = Sampler(p.pid, sample, child=True)
            sampler.start()
        rc, ru = reap(p, ctx.timeout)
        wall = time.monotonic() - t0
        if sampler:
            sampler.stop.set()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    ru = {}
    try:
        with open(rfile) as f:
            ru = dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        pass
    res = {"rc": rc, "wall_s": wall, "user_s": float(ru.get("user_s", "nan")),
           "sys_s": float(ru.get("sys_s", "nan")),
           "maxrss_kb": ru.get("peak_rss_kb", ""), "stdout": stdout,
           "stderr": stderr}
    if sampler and sampler.anon > 0:
        res["sampled"] = {"anon_kb": str(sampler.anon),
                          "anon_huge_kb": str(sampler.huge),
                          "coverage": "%.4g" % (sampler.huge / sampler.anon)}
    return res


def run_sqlite(ctx, lib, argv):
    exe = shutil.which("sqlite3")
    if not exe:
        return {"status": "skipped", "note": "sqlite3 not installed"}
    a = dict(x.split("=", 1) for x in argv)
    script = os.path.join(ctx.tmp, "workload-%s-%s.sql" % (a["rows"],
                                                         a["statements"]))
    if not os.path.exists(script):
        ctx.sql_count[script] = sqlite_script(script, int(a["rows"]),
                                              int(a["statements"]))
    with open(script) as inp:
        res = run_wrapped(ctx, [exe, ":memory:"], glibc_lib_for(exe, lib),
                          stdin=inp, sample=0.1)
    ops, wall = ctx.sql_count[script], res["wall_s"]
    kv = {"ops": str(ops), "seconds": "%.6g" % wall,
          "ops_per_s": "%.6g" % (ops / wall),
          "peak_rss_kb": str(res["maxrss_kb"]),
          "result_lines": str(len(res["stdout"].splitlines()))}
    kv.update(res.get("sampled", {}))
    if res["rc"] == 0 and res["stderr"].strip():
        res["rc"] = 1
    res["kv"] = kv
    return res


# smallprog: short-lived programs on tiny inputs ({oneline}: a file of one
# line), and the Debian package that brings each when it is missing.
SMALL_PROGRAMS = [("python3", ["python3", "-c", "pass"], "python3"),
                  ("perl", ["perl", "-e", "1"], "perl"),
                  ("git", ["git", "--version"], "git"),
                  ("sort", ["sort", "{oneline}"], "coreutils"),
                  ("sqlite3", ["sqlite3", ":memory:", "select 1;"], "sqlite3")]


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def find_small_program(name):
    """The program itself, not a wrapper script in front of it (a pyenv
    shim would measure bash): PATH first, then /usr/bin, then (python3)
    the interpreter running this script."""
    cands = [shutil.which(name), "/usr/bin/" + name]
    if name == "python3":
        cands.append(sys.executable)
    for c in cands:
        if c and is_elf(os.path.realpath(c)):
            return os.path.realpath(c)
    return None


def run_smallprog(ctx, lib, argv):
    """Start one short-lived program `starts` times through wl_exec (its
    own wait4 ru_maxrss, not the runner's: Linux keeps maxrss across
    exec); peak RSS is the median start's, time the median wall time."""
    name, a = argv[0], dict(x.split("=", 1) for x in argv[1:])
    exe = ctx.small_exe.get(name)
    if not exe:
        return {"status": "skipped", "note": ctx.small_skip[name]}
    words = [cmd for n, cmd, _pkg in SMALL_PROGRAMS if n == name][0][1:]
    cmd = [exe] + [x.format(oneline=ctx.oneline) for x in words]
    pre = glibc_lib_for(exe, lib)
    rss, walls, user, sys_ = [], [], [], []
    for _ in range(int(a.get("starts", "5"))):
        res = run_wrapped(ctx, cmd, pre)
        if res["rc"] != 0 or not str(res["maxrss_kb"]).isdigit():
            res["note"] = "%s failed" % " ".join(cmd)
            return res
        rss.append(int(res["maxrss_kb"]))
        walls.append(res["wall_s"])
        user.append(res["user_s"])
        sys_.append(res["sys_s"])
    res["kv"] = {"ops": str(len(walls)), "seconds": "%.6g" % sum(walls),
                 "ops_per_s": "%.6g" % (len(walls) / sum(walls)),
                 "peak_rss_kb": "%d" % statistics.median(rss),
                 "rss_min_kb": str(min(rss)), "rss_max_kb": str(max(rss)),
                 "wall_ms": "%.3f" % (1000 * statistics.median(walls)),
                 "cpu_ms": "%.3f" % (1000 * statistics.median(
                     [u + s for u, s in zip(user, sys_)])),
                 "program": exe}
    res["wall_s"], res["user_s"], res["sys_s"] = sum(walls), sum(user), \
        sum(sys_)
    res["maxrss_kb"] = max(rss)
    return res
