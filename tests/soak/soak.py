#!/usr/bin/env python3
"""soak.py CASE LIBSPBMALLOC WORKDIR [SPBSTAT] — real servers and programs
under LD_PRELOAD=libspbmalloc.so for minutes, with their results verified and
their RSS watched.

Cases:
  redis     redis-server on 127.0.0.1 (a free port), driven by redis-benchmark
            (4-8 clients, pipelining, SET/GET/LPUSH/LRANGE_100/HSET, values of
            16 B to 300 KB in phases, each phase in its own database, whose
            keyspace is filled first, so that its keys always hold values of
            its size; lists trimmed to 1000 after each phase; samples read
            back) and, alongside, a writer of
            our own in db 0 that sets, reads back and deletes keys of
            16 B .. 400 KiB (a crc model of every key; each GET is checked
            against it; all keys at the end).
  programs  sqlite and python side by side, each for the whole duration.
  sqlite    the sqlite3 CLI on a file database plus an attached :memory: one:
            transactions (some rolled back) of inserts, replaces and deletes of
            blobs of 16 B .. 256 KiB, each blob's sha3 kept in a model; after
            every round a checksum query (count, sizes, sha3 of every blob)
            must match the model; integrity_check now and then.
  python    tests/soak/py_churn.py (PYTHONMALLOC=malloc): dicts, lists,
            strings, bytes churned; objects rebuilt and compared; the round
            digests must equal those of a run without spbmalloc.

Each workload runs in rounds whose live data has the same size at every
round's end. RSS (/proc/PID/status VmRSS) is sampled every SPB_SOAK_SAMPLE_S
seconds for the per-minute table, and at two checkpoints, taken at a round's
end after the load has been stopped for SPB_SOAK_QUIESCE_S seconds (longer
than spbmalloc's decay delay, so freed pageblocks have gone back): the
reference, at the first round end after the warm-up (5 minutes, or half the
run when it is shorter than 10 minutes), and the end. The growth from the
reference to the end must stay under SPB_SOAK_MAX_GROWTH_PCT (5) percent.
At each checkpoint `spbstat --json` is saved as WORKDIR/CASE/spbstat-LABEL.json
(live bytes, pageblocks in use: whether a growth is the program's or the
allocator's).

LIBSPBMALLOC "none" runs the programs on their own allocator (glibc; redis's
jemalloc), and another library is preloaded as given: baseline runs to
compare with, where no proof of spbmalloc is asked for.

Proof that spbmalloc served the process: its SPBMALLOC_STATS=1 exit summary
("spbmalloc: allocations N served") on the program's stderr, N at least the
case's minimum, and, with SPBSTAT, the live stats segment
/dev/shm/spbmalloc.PID read with `spbstat --json PID` at the checkpoints.

A crash (signal) or a hang (no answer for SPB_SOAK_HANG_S seconds) fails the
case; the driver saves a backtrace (gdb on the live process, or on the core
file left in WORKDIR/CASE) next to the logs and prints it.

Environment: SPB_SOAK_MINUTES (30), SPB_SOAK_WARMUP_MINUTES (5),
SPB_SOAK_MAX_GROWTH_PCT (5), SPB_SOAK_SAMPLE_S (5), SPB_SOAK_QUIESCE_S (3, at
least SPBMALLOC_DECAY_MS + 2 s), SPB_SOAK_ROUND_S (30: the redis round's
length), SPB_SOAK_HANG_S (300), SPB_SOAK_SEED (1), SPB_SOAK_REDIS_PARTS
(bench,writer: either alone to see which drives a growth); SPBMALLOC_*
settings are passed on to the programs.
Exit 0 = pass, 1 = fail, 77 = skipped (a program is missing).
"""
import glob
import hashlib
import json
import math
import os
import queue
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
SERVED_RE = re.compile(r"^spbmalloc: allocations\s+(\d+) served", re.M)
COMPLAINT_RE = re.compile(r"^spbmalloc: .*(invalid pointer|double free|warning|error|corrupt)",
                          re.M | re.I)


def env_num(name, default, cast=float):
    v = os.environ.get(name, "")
    try:
        return cast(v) if v.strip() else default
    except ValueError:
        print(f"soak: ignoring {name}={v!r} (not a number)")
        return default


MINUTES = env_num("SPB_SOAK_MINUTES", 30.0)
WARMUP_MIN = env_num("SPB_SOAK_WARMUP_MINUTES", 5.0)
MAX_GROWTH = env_num("SPB_SOAK_MAX_GROWTH_PCT", 5.0)
SAMPLE_S = env_num("SPB_SOAK_SAMPLE_S", 5.0)
ROUND_S = env_num("SPB_SOAK_ROUND_S", 30.0)
HANG_S = env_num("SPB_SOAK_HANG_S", 300.0)
SEED = env_num("SPB_SOAK_SEED", 1, int)
_decay_s = env_num("SPBMALLOC_DECAY_MS", 1000.0) / 1000.0
QUIESCE_S = max(env_num("SPB_SOAK_QUIESCE_S", 3.0), _decay_s + 2.0)


class SoakFailure(Exception):
    pass


CHILDREN = []   # the programs under soak, killed if the driver is told to stop


def on_signal(signum, _frame):
    """ctest's TIMEOUT or ^C: take the programs under soak down with us."""
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    print(f"soak: stopped by signal {signum}", flush=True)
    os._exit(1)


def mib(b):
    return "-" if b is None else f"{b / 1048576:.1f}"


def need(prog, package):
    path = shutil.which(prog)
    if not path:
        print(f"SKIPPED: {prog} is not installed (Debian package {package}; "
              "tools/lib-deps.sh SPB_TEST_PKGS lists it)")
        sys.exit(SKIP)
    return path


def vmrss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def enable_core():
    """preexec_fn: core files on, as large as the hard limit allows."""
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    except (ValueError, OSError):
        pass


def baseline(lib):
    """LIB "none" (no preload) or another allocator: a run to compare with."""
    return lib is None or "spbmalloc" not in os.path.basename(lib)


def preload_env(lib, extra=None):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update({"SPBMALLOC_STATS": "1", "SPBMALLOC_STATSEG_DELAY_MS": "0", "LC_ALL": "C"})
    if lib:
        env["LD_PRELOAD"] = lib
    env.update(extra or {})
    return env


def gdb_live(pid, path):
    """Backtraces of every thread of a live process into path; returns the text."""
    if not shutil.which("gdb"):
        return "(no gdb for a backtrace)"
    try:
        p = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "info threads",
                            "-ex", "thread apply all bt"], capture_output=True, text=True,
                           timeout=180)
        text = p.stdout + p.stderr
    except subprocess.SubprocessError as e:
        text = f"(gdb failed: {e})"
    with open(path, "w") as f:
        f.write(text)
    return text


def gdb_core(exe, workdir, pid, path):
    cores = [c for c in glob.glob(os.path.join(workdir, "core*"))
             if c.endswith(f".{pid}") or os.path.basename(c) == "core"]
    if not cores:
        with open("/proc/sys/kernel/core_pattern") as f:
            pat = f.read().strip()
        return (f"(no core file in {workdir}; kernel.core_pattern is {pat!r}, "
                f"RLIMIT_CORE hard limit {resource.getrlimit(resource.RLIMIT_CORE)[1]})")
    core = max(cores, key=os.path.getmtime)
    if not shutil.which("gdb"):
        return f"(core file {core}; no gdb to read it)"
    try:
        p = subprocess.run(["gdb", "-batch", "-nx", "-ex", "info threads",
                            "-ex", "thread apply all bt", exe, core],
                           capture_output=True, text=True, timeout=180)
        text = f"core file {core}\n" + p.stdout + p.stderr
    except subprocess.SubprocessError as e:
        text = f"(gdb on {core} failed: {e})"
    with open(path, "w") as f:
        f.write(text)
    return text


def tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Sampler(threading.Thread):
    """VmRSS of one process every SAMPLE_S seconds."""

    def __init__(self, pid, t0):
        super().__init__(daemon=True)
        self.pid, self.t0 = pid, t0
        self.samples = []          # (seconds since t0, rss bytes)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            rss = vmrss(self.pid)
            if rss is None:
                return
            self.samples.append((time.monotonic() - self.t0, rss))
            self.stop.wait(SAMPLE_S)


class Soak:
    """The bookkeeping of one program under soak: timing, checkpoints, proof."""

    def __init__(self, name, lib, workdir, spbstat, min_served):
        self.name, self.lib, self.spbstat, self.min_served = name, lib, spbstat, min_served
        self.work = os.path.join(workdir, name)
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.duration = MINUTES * 60.0
        self.warmup = min(WARMUP_MIN * 60.0, self.duration / 2.0)
        self.proc = None
        self.exe = None
        self.t0 = None
        self.sampler = None
        # checkpoints: (t, rss, spbmalloc live bytes, program's own live count, pageblocks in use)
        self.ref = self.end = None
        self.ops = 0
        self.rounds = 0
        self.failures = []
        self.notes = []
        self.served = None
        self.seg_seen = False
        self.seg_alloc = 0
        self.errpath = os.path.join(self.work, "stderr.log")
        self.app_live = None        # callable giving the program's own live-bytes figure
        self.logs = []              # more logs to show when it crashes

    def start(self, argv, env, **kw):
        self.exe = argv[0]
        self.errf = open(self.errpath, "wb")
        self.proc = subprocess.Popen(argv, cwd=self.work, env=env, stderr=self.errf,
                                     preexec_fn=enable_core, **kw)
        CHILDREN.append(self.proc)
        self.t0 = time.monotonic()
        self.sampler = Sampler(self.proc.pid, self.t0)
        self.sampler.start()

    def elapsed(self):
        return time.monotonic() - self.t0

    def alive(self):
        if self.proc.poll() is not None:
            self.crashed(f"{self.name} exited during the soak (status {self.proc.returncode})")

    def crashed(self, what):
        rc = self.proc.poll()
        msg = what
        if rc is not None and rc < 0:
            bt = gdb_core(self.exe, self.work, self.proc.pid, os.path.join(self.work, "crash-bt.txt"))
            msg += f"\nkilled by signal {-rc} ({signal.Signals(-rc).name});\n{bt[-6000:]}"
        for path in [self.errpath] + self.logs:
            msg += f"\n{os.path.basename(path)} tail ({path}):\n{tail(path)}"
        raise SoakFailure(msg)

    def hung(self, what):
        if self.proc.poll() is None:
            path = os.path.join(self.work, "hang-bt.txt")
            bt = gdb_live(self.proc.pid, path)
            raise SoakFailure(f"{what}: no progress for {HANG_S:.0f} s; backtraces of "
                              f"{self.name} (saved in {path}):\n{bt[-8000:]}")
        self.crashed(what)

    def segment(self, save=None):
        """The live stats segment read by spbstat --json (saved to save), or {}."""
        pid = self.proc.pid
        if not os.path.exists(f"/dev/shm/spbmalloc.{pid}"):
            return {}
        self.seg_seen = True
        if not self.spbstat:
            return {}
        try:
            p = subprocess.run([self.spbstat, "--json", str(pid)], capture_output=True, timeout=30)
            js = json.loads(p.stdout)
            self.seg_alloc = max(self.seg_alloc, int(js["counters"]["malloc_alloc"]))
            if save:
                with open(save, "wb") as f:
                    f.write(p.stdout)
            return js
        except (subprocess.SubprocessError, ValueError, KeyError, TypeError, OSError):
            return {}

    def checkpoint(self, label):
        """Load is stopped: wait out the decay, then read RSS and live bytes."""
        self.alive()
        time.sleep(QUIESCE_S)
        self.alive()
        rss = vmrss(self.proc.pid)
        js = self.segment(os.path.join(self.work, f"spbstat-{label}.json"))
        g = js.get("gauges", {})
        live = g.get("live_bytes")
        pbs = g.get("pageblocks_by_class", {})
        used = sum(v for k, v in pbs.items() if k != "free") if pbs else None
        app = self.app_live() if self.app_live else None
        t = self.elapsed()
        print(f"[{self.name}] {t / 60:6.2f} min checkpoint {label}: RSS {mib(rss)} MiB"
              + (f", spbmalloc live {mib(live)} MiB, mapped {mib(g.get('mapped_bytes'))} MiB, "
                 f"pageblocks in use {used}" if g else "")
              + (f", program's own count {mib(app)} MiB" if app is not None else "")
              + f", {self.ops} ops in {self.rounds} rounds", flush=True)
        return (t, rss, live, app, used)

    def after_round(self):
        """Called at each round's end; returns False when the soak is over."""
        self.rounds += 1
        t = self.elapsed()
        if self.ref is None and t >= self.warmup:
            self.ref = self.checkpoint("reference")
            return True
        if self.ref is not None and t >= self.duration:
            self.end = self.checkpoint("end")
            return False
        return True

    def finish(self, stop_cmd):
        """Ask the program to exit (stop_cmd()), check its status and the proof."""
        seg_n = self.segment().get("counters", {}).get("malloc_alloc")
        stop_cmd()
        try:
            rc = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.hung(f"{self.name} did not exit")
        self.sampler.stop.set()
        self.errf.close()
        if rc != 0:
            self.crashed(f"{self.name} exit status {rc}")
        with open(self.errpath, errors="replace") as f:
            err = f.read()
        served = [int(m) for m in SERVED_RE.findall(err)]
        self.served = sum(served) if served else None
        bad = COMPLAINT_RE.findall(err)
        if bad:
            self.failures.append(f"spbmalloc complained on stderr: {bad[:5]}")
        proof = max(self.served or 0, self.seg_alloc)
        if baseline(self.lib):
            self.notes.append(f"baseline run with {self.lib or 'the default allocator'}: "
                              "no proof of spbmalloc asked for")
        elif proof < self.min_served:
            self.failures.append(
                f"no proof that spbmalloc served {self.name}: exit summary "
                f"{self.served}, stats segment malloc_alloc {self.seg_alloc or seg_n} "
                f"(at least {self.min_served} expected)")

    def growth(self):
        if not (self.ref and self.end and self.ref[1]):
            return None
        return 100.0 * (self.end[1] - self.ref[1]) / self.ref[1]

    def verdict(self):
        g = self.growth()
        if g is None and not self.failures:
            self.failures.append("no reference/end checkpoint was taken")
        elif g is not None and g >= MAX_GROWTH:
            self.failures.append(f"RSS grew {g:.2f} % from the reference checkpoint "
                                 f"({mib(self.ref[1])} MiB at {self.ref[0] / 60:.2f} min) to "
                                 f"the end ({mib(self.end[1])} MiB); limit {MAX_GROWTH} %")
        return not self.failures

    def report(self):
        s = self.sampler.samples if self.sampler else []
        print(f"\n== soak {self.name}: per-minute RSS (sampled every {SAMPLE_S:g} s) ==")
        print(f"{'minute':>6} {'RSS min MiB':>12} {'RSS max MiB':>12} {'last MiB':>9}")
        m = 0
        while True:
            chunk = [r for t, r in s if m * 60 <= t < (m + 1) * 60]
            if not chunk:
                if m * 60 > (s[-1][0] if s else 0):
                    break
            else:
                print(f"{m + 1:>6} {mib(min(chunk)):>12} {mib(max(chunk)):>12} {mib(chunk[-1]):>9}")
            m += 1
        after = [r for t, r in s if self.ref and t >= self.ref[0]]
        dur = (self.end[0] if self.end else (s[-1][0] if s else 0)) / 60.0
        rate = self.ops / (dur * 60.0) if dur > 0 else 0.0
        g = self.growth()
        print(f"\n== soak {self.name}: summary ==")
        rows = [
            ("minutes run", f"{dur:.2f}"),
            ("reference checkpoint at", f"{self.ref[0] / 60:.2f} min" if self.ref else "-"),
            ("RSS at reference checkpoint", f"{mib(self.ref[1] if self.ref else None)} MiB"),
            ("RSS at end", f"{mib(self.end[1] if self.end else None)} MiB"),
            ("RSS growth", "-" if g is None else f"{g:+.2f} % (limit {MAX_GROWTH:g} %)"),
            ("RSS max sampled after reference", f"{mib(max(after)) if after else '-'} MiB"),
            ("spbmalloc live bytes ref -> end",
             f"{mib(self.ref[2] if self.ref else None)} -> "
             f"{mib(self.end[2] if self.end else None)} MiB"),
        ]
        if self.ref and self.ref[4] is not None:
            rows.append(("spbmalloc pageblocks in use ref -> end",
                         f"{self.ref[4]} -> {self.end[4] if self.end else '-'} (2 MiB each)"))
        if self.ref and self.ref[3] is not None:
            rows.append(("program's own live count ref -> end",
                         f"{mib(self.ref[3])} -> {mib(self.end[3] if self.end else None)} MiB"))
        rows += [
            ("rounds", str(self.rounds)),
            ("ops done", f"{self.ops}"),
            ("ops/s", f"{rate:.0f}"),
            ("proof: exit summary allocations served", str(self.served)),
            ("proof: stats segment /dev/shm/spbmalloc.PID",
             ("present" if self.seg_seen else "absent")
             + (f", malloc_alloc {self.seg_alloc}" if self.seg_alloc else "")),
        ]
        for note in self.notes:
            rows.append(("note", note))
        w = max(len(a) for a, _ in rows)
        for a, b in rows:
            print(f"  {a:<{w}}  {b}")
        ok = self.verdict()
        for f in self.failures:
            print(f"  FAIL: {f}")
        print(f"soak {self.name}: {'ok' if ok else 'FAILED'}", flush=True)
        return ok


def run_guarded(soak, body, stop):
    """Run body(); on any failure record it and make sure the process is gone.
    A failure seen by a client (a reset connection, a short reply) is often the
    program dying: give it a few seconds to finish dying (a core dump takes
    time), and if it did, report the crash with its backtrace."""
    try:
        body()
        soak.finish(stop)
    except Exception as e:  # pylint: disable=broad-except
        msg = str(e) if isinstance(e, SoakFailure) else f"{type(e).__name__}: {e}"
        if soak.proc and "killed by signal" not in msg and "exit status" not in msg:
            deadline = time.monotonic() + 20
            while soak.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if soak.proc.poll() is not None:
                try:
                    soak.crashed(f"{soak.name} ended (status {soak.proc.returncode}) after: {msg}")
                except SoakFailure as e2:
                    msg = str(e2)
        soak.failures.append(msg)
    finally:
        if soak.proc and soak.proc.poll() is None:
            soak.proc.kill()
            soak.proc.wait()
        if soak.sampler:
            soak.sampler.stop.set()


# ---------------------------------------------------------------- redis

class RedisError(Exception):
    pass


class Redis:
    """A minimal RESP2 client: pipelined commands, replies parsed in order."""

    def __init__(self, port, timeout):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.r = self.sock.makefile("rb", buffering=1 << 16)

    @staticmethod
    def pack(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out += [b"$%d\r\n" % len(a), a, b"\r\n"]
        return b"".join(out)

    def reply(self):
        line = self.r.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.r.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("redis closed the connection in a bulk reply")
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError(f"unexpected reply line {line[:60]!r}")

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(self.pack(c) for c in cmds))
        return [self.reply() for _ in cmds]

    def call(self, *args):
        rep = self.pipeline([args])[0]
        if isinstance(rep, RedisError):
            raise rep
        return rep

    def close(self):
        try:
            self.r.close()
            self.sock.close()
        except OSError:
            pass


class Writer:
    """Keys w:SLOT of 16 B .. 400 KiB: set, read back, deleted, checked.

    The sizes are a fixed multiset dealt out again each pass, so at a pass's
    end every slot is set and the total is the same. model[slot] = (length,
    crc32) of what the server must hold."""

    def __init__(self, port, seed, slots=1500):
        self.cli = Redis(port, HANG_S)
        self.rng = random.Random(seed)
        lo, hi = math.log(16), math.log(400 << 10)
        self.sizes = [int(math.exp(self.rng.uniform(lo, hi))) for _ in range(slots)]
        self.model = {}
        self.ver = 0
        self.ops = 0
        self.gets_checked = 0
        self.passes = 0
        self.error = None
        self.stop = threading.Event()

    def key(self, slot):
        return b"w:%d" % slot

    def set_cmd(self, slot, size):
        self.ver += 1
        val = random.Random(slot * 1000003 + self.ver).randbytes(size)
        return (b"SET", self.key(slot), val), ("set", slot, size, zlib.crc32(val))

    def flush(self, batch):
        replies = self.cli.pipeline([c for c, _ in batch])
        for (_, chk), rep in zip(batch, replies):
            if isinstance(rep, RedisError):
                raise SoakFailure(f"writer: {chk[0]} answered {rep}")
            kind, slot = chk[0], chk[1]
            want = self.model.get(slot)
            if kind == "set":
                if rep != "OK":
                    raise SoakFailure(f"writer: SET w:{slot} answered {rep!r}")
                self.model[slot] = (chk[2], chk[3])
            elif kind == "del":
                if rep != (1 if want else 0):
                    raise SoakFailure(f"writer: deleting w:{slot} answered {rep!r}, model "
                                      f"says it {'exists' if want else 'does not exist'}")
                self.model.pop(slot, None)
            elif kind == "get":
                got = None if rep is None else (len(rep), zlib.crc32(rep))
                if got != want:
                    raise SoakFailure(f"writer: GET w:{slot} read back (len, crc) {got}, "
                                      f"model says {want}")
                self.gets_checked += 1
            elif kind == "strlen":
                if rep != (want[0] if want else 0):
                    raise SoakFailure(f"writer: STRLEN w:{slot} = {rep!r}, model {want}")
        self.ops += len(batch)
        batch.clear()

    def one_pass(self):
        rng = self.rng
        perm = self.sizes[:]
        rng.shuffle(perm)
        order = list(range(len(perm)))
        rng.shuffle(order)
        deleted = []
        batch = []
        for slot in order:
            if slot in self.model and rng.random() < 0.15:
                batch.append(((rng.choice((b"DEL", b"UNLINK")), self.key(slot)), ("del", slot)))
                deleted.append(slot)
            else:
                batch.append(self.set_cmd(slot, perm[slot]))
            r = rng.random()
            v = order[rng.randrange(len(order))]
            if r < 0.5:
                batch.append(((b"GET", self.key(v)), ("get", v)))
            elif r < 0.6:
                batch.append(((b"STRLEN", self.key(v)), ("strlen", v)))
            if len(batch) >= 32:
                self.flush(batch)
        for slot in deleted:
            batch.append(self.set_cmd(slot, perm[slot]))
            if len(batch) >= 32:
                self.flush(batch)
        self.flush(batch)
        self.passes += 1

    def run(self):
        """Passes until stop is set (the pass under way is finished)."""
        try:
            while True:
                self.one_pass()
                if self.stop.is_set():
                    return
        except BaseException as e:  # reported by the round loop
            self.error = e

    def verify_all(self):
        """GET every slot; compare with the model. Returns (keys, bytes, checksum)."""
        slots = sorted(self.model)
        total, csum_model, csum_read = 0, 0, 0
        for i in range(0, len(slots), 32):
            part = slots[i:i + 32]
            reps = self.cli.pipeline([(b"GET", self.key(s)) for s in part])
            for s, rep in zip(part, reps):
                want = self.model[s]
                got = None if rep is None or isinstance(rep, RedisError) else \
                    (len(rep), zlib.crc32(rep))
                if got != want:
                    raise SoakFailure(f"final check: w:{s} read back {got}, model {want}")
                total += want[0]
                csum_model = (csum_model * 31 + want[1]) & 0xffffffffffffffff
                csum_read = (csum_read * 31 + got[1]) & 0xffffffffffffffff
        return len(slots), total, csum_model, csum_read


# d, redis-benchmark tests, clients, pipeline, keyspace (-r), first -n
REDIS_PHASES = [
    (16, "set,get,lpush,lrange_100,hset", 8, 16, 50000, 20000),
    (128, "set,get,lpush,lrange_100,hset", 8, 16, 50000, 20000),
    (1024, "set,get,lpush,lrange_100,hset", 8, 16, 20000, 10000),
    (8192, "set,get,lpush,hset", 8, 8, 2000, 6000),
    (65536, "set,get,hset", 4, 4, 400, 1200),
    (300000, "set,get,hset", 4, 2, 100, 300),
]
BENCH_CHARS = bytes(range(0x30, 0x7f))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_redis(lib, workdir, spbstat):
    server = need("redis-server", "redis-server")
    bench = need("redis-benchmark", "redis-tools")
    soak = Soak("redis", lib, workdir, spbstat, 1000000)
    parts = set(os.environ.get("SPB_SOAK_REDIS_PARTS", "bench,writer").split(","))
    if not parts & {"bench", "writer"}:
        print(f"FAIL: SPB_SOAK_REDIS_PARTS={','.join(parts)}: want bench, writer or both")
        return 1
    if parts != {"bench", "writer"}:
        soak.notes.append(f"only {', '.join(sorted(parts & {'bench', 'writer'}))} "
                          "(SPB_SOAK_REDIS_PARTS)")
    env = preload_env(lib)
    port = None
    soak.logs.append(os.path.join(soak.work, "redis.log"))
    for attempt in range(3):
        port = free_port()
        argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", soak.work, "--logfile", "", "--daemonize", "no",
                "--lazyfree-lazy-user-del", "yes", "--io-threads", "1"]
        soak.start(argv, env, stdout=open(os.path.join(soak.work, "redis.log"), "wb"))
        cli = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and soak.proc.poll() is None:
            try:
                cli = Redis(port, HANG_S)
                if cli.call("PING") == "PONG":
                    break
            except (OSError, RedisError):
                cli = None
                time.sleep(0.2)
        if cli:
            break
        if soak.proc.poll() is None:
            soak.proc.kill()
        soak.proc.wait()
        soak.sampler.stop.set()
        soak.errf.close()
        if "Address already in use" not in tail(os.path.join(soak.work, "redis.log")):
            print(f"FAIL: redis-server did not start under spbmalloc:\n"
                  f"{tail(os.path.join(soak.work, 'redis.log'))}{tail(soak.errpath)}")
            return 1
    else:
        print("FAIL: redis-server could not get a free port in 3 tries")
        return 1
    ver = cli.call("INFO", "server").decode()
    m = re.search(r"redis_version:(\S+)", ver)
    soak.notes.append(f"redis {m.group(1) if m else '?'} on 127.0.0.1:{port}, pid {soak.proc.pid}")

    def used_memory():
        info = cli.call("INFO", "memory").decode()
        m = re.search(r"^used_memory:(\d+)", info, re.M)
        return int(m.group(1)) if m else None
    soak.app_live = used_memory

    # -n of each phase: sized from the last run so that a phase takes about
    # SPB_SOAK_ROUND_S / phases seconds (and covers the keyspace of the large sizes).
    nreq = {p[0]: p[5] for p in REDIS_PHASES}
    rps = {}
    phase_s = max(1.0, ROUND_S / len(REDIS_PHASES))
    stats = {"bench_ops": 0}

    def bench_phase(db, d, tests, clients, pipe, keyspace):
        ntests = len(tests.split(","))
        n = nreq[d]
        argv = [bench, "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-P", str(pipe),
                "-n", str(n), "-r", str(keyspace), "-d", str(d), "-t", tests, "--csv",
                "--dbnum", str(db)]
        t = time.monotonic()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_S)
        except subprocess.TimeoutExpired:
            soak.hung(f"redis-benchmark -d {d} -n {n}")
        soak.alive()
        rows = [line for line in p.stdout.splitlines()
                if line.startswith('"') and not line.startswith('"test"')]
        want = ntests + (1 if "lrange" in tests else 0)
        if p.returncode != 0 or len(rows) != want or "rror" in p.stdout + p.stderr:
            raise SoakFailure(f"redis-benchmark -d {d} -t {tests}: status {p.returncode}, "
                              f"{len(rows)} of {want} results\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        took = max(time.monotonic() - t, 0.01)
        rps[d] = n * len(rows) / took
        nreq[d] = int(min(max(n * phase_s / took, 3 * keyspace if d >= 8192 else 1000,
                              n / 2), n * 2))
        stats["bench_ops"] += n * len(rows)

    def check_bench_data(db, d, keyspace):
        """Values redis-benchmark wrote in this phase's database (its random data:
        bytes '0'..'~', the same buffer for every request of a run) are d bytes."""
        rng = random.Random(soak.rounds * 100 + db)
        cmds = [(b"SELECT", db)]
        cmds += [(b"GET", b"key:%012d" % rng.randrange(keyspace)) for _ in range(10)]
        cmds += [(b"HGET", b"myhash", b"element:%012d" % rng.randrange(keyspace))
                 for _ in range(10)]
        cmds += [(b"LRANGE", b"mylist", 0, 4), (b"SELECT", 0)]
        reps = cli.pipeline(cmds)
        if reps[0] != "OK" or reps[-1] != "OK":
            raise SoakFailure(f"SELECT {db} answered {reps[0]!r}, SELECT 0 {reps[-1]!r}")
        vals = [v for v in reps[1:-2] if v is not None] + list(reps[-2] or [])
        for v in vals:
            if isinstance(v, RedisError) or len(v) != d or v.translate(None, BENCH_CHARS):
                raise SoakFailure(f"a redis-benchmark value in db {db} read back wrong: "
                                  f"{v[:40] if isinstance(v, bytes) else v!r} "
                                  f"({len(v) if isinstance(v, bytes) else '?'} B, {d} written)")
        stats["bench_ops"] += len(cmds)

    def prefill():
        """Fill every phase's keyspace (keys and hash fields) with values of its
        size, so that the live data is the same at every round's end from the
        first round on, not only once the random keys have all been hit."""
        for db, (d, _, _, _, keyspace, _) in enumerate(REDIS_PHASES, 1):
            val = b"x" * d
            batch, size = [(b"SELECT", db)], 0
            for i in range(keyspace):
                batch += [(b"SET", b"key:%012d" % i, val),
                          (b"HSET", b"myhash", b"element:%012d" % i, val)]
                size += 2 * d
                if size >= (8 << 20) or i == keyspace - 1:
                    bad = [r for r in cli.pipeline(batch) if isinstance(r, RedisError)]
                    if bad:
                        raise SoakFailure(f"filling db {db}: {bad[0]}")
                    stats["bench_ops"] += len(batch)
                    batch, size = [], 0
        if cli.call("SELECT", 0) != "OK":
            raise SoakFailure("SELECT 0 failed")

    writer = [None]

    def body():
        if "bench" in parts:
            prefill()
        w = None
        if "writer" in parts:
            writer[0] = w = Writer(port, SEED * 7, 1500)
        while True:
            # The writer runs alongside the benchmark phases, then ends its pass.
            if w:
                w.stop.clear()
                th = threading.Thread(target=w.run, daemon=True)
                th.start()
            if "bench" in parts:
                for db, (d, tests, clients, pipe, keyspace, _) in enumerate(REDIS_PHASES, 1):
                    bench_phase(db, d, tests, clients, pipe, keyspace)
                    reps = cli.pipeline([(b"SELECT", db), (b"LTRIM", b"mylist", 0, 999),
                                         (b"SELECT", 0)])
                    if reps != ["OK", "OK", "OK"]:
                        raise SoakFailure(f"trimming mylist in db {db}: {reps}")
                    check_bench_data(db, d, keyspace)
                    if w and w.error:
                        break
            else:
                t_end = time.monotonic() + ROUND_S
                while time.monotonic() < t_end and not w.error:
                    time.sleep(0.5)
            if w:
                w.stop.set()
                th.join(HANG_S)
                if th.is_alive():
                    soak.hung("the writer's pass")
                if w.error:
                    if isinstance(w.error, SoakFailure):
                        raise w.error
                    soak.alive()
                    raise SoakFailure(f"writer: {type(w.error).__name__}: {w.error}")
            soak.ops = stats["bench_ops"] + (w.ops if w else 0)
            if not soak.after_round():
                break
        if w:
            n, total, cm, cr = w.verify_all()
            soak.ops = stats["bench_ops"] + w.ops + n
            soak.notes.append(f"writer: {w.passes} passes, {w.gets_checked} GETs checked "
                              f"against the model; final check of all {n} keys "
                              f"({total / 1048576:.1f} MiB): checksum model {cm:016x} == "
                              f"server {cr:016x}")
        if "bench" in parts:
            soak.notes.append(f"redis-benchmark: {stats['bench_ops']} requests; last rps by "
                              "value size: " + ", ".join(f"{d} B {r:.0f}/s"
                                                         for d, r in sorted(rps.items())))
        ks = cli.call("INFO", "keyspace").decode()
        soak.notes.append("keys at end: " + ", ".join(
            f"{m.group(1)} {m.group(2)}" for m in re.finditer(r"^(db\d+):keys=(\d+)", ks, re.M)))

    def stop():
        try:
            cli.pipeline([(b"SHUTDOWN", b"NOSAVE")])
        except (OSError, ConnectionError):
            pass
        cli.close()
        if writer[0] and writer[0].cli:
            writer[0].cli.close()

    run_guarded(soak, body, stop)
    return 0 if soak.report() else 1


# ---------------------------------------------------------------- sqlite

class Sqlite:
    """The sqlite3 CLI on a pipe; each batch ends with a SYNC marker line."""

    def __init__(self, soak):
        self.soak = soak
        self.lines = queue.Queue()
        self.n = 0
        threading.Thread(target=self.reader, daemon=True).start()

    def reader(self):
        for line in self.soak.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def run(self, sql):
        self.n += 1
        marker = f"SYNC|{self.n}"
        try:
            self.soak.proc.stdin.write(f"{sql}\nSELECT 'SYNC', {self.n};\n".encode())
            self.soak.proc.stdin.flush()
        except BrokenPipeError:
            self.soak.crashed("sqlite3 closed its input")
        out = []
        while True:
            try:
                line = self.lines.get(timeout=HANG_S)
            except queue.Empty:
                self.soak.hung("sqlite3 batch")
            if line is None:
                self.soak.crashed("sqlite3 closed its output")
            if line == marker:
                break
            out.append(line)
        if os.path.getsize(self.soak.errpath) > 0:
            err = tail(self.soak.errpath)
            if any(not line.startswith("spbmalloc: ") for line in err.splitlines()):
                raise SoakFailure(f"sqlite3 reported an error:\n{err}")
        return out


class SqlTable:
    """One table of blob slots and its model: id -> (n, ver, src, sha3 hex or None)."""

    def __init__(self, name, rng, slots, hi):
        self.name = name
        lo, hi = math.log(16), math.log(hi)
        self.sizes = [int(math.exp(rng.uniform(lo, hi))) for _ in range(slots)]
        self.model = {}

    def agg(self, model=None):
        model = self.model if model is None else model
        return len(model), sum(v[0] for v in model.values())


def case_sqlite(lib, workdir, spbstat):
    sq = need("sqlite3", "sqlite3")
    soak = Soak("sqlite", lib, workdir, spbstat, 100000)
    soak.start([sq, "-batch", "soak.db"], preload_env(lib), stdin=subprocess.PIPE,
               stdout=subprocess.PIPE)
    db = Sqlite(soak)
    rng = random.Random(SEED * 31)
    tables = [SqlTable("main.blobs", rng, 2500, 256 << 10), SqlTable("m.blobs", rng, 800, 64 << 10)]
    ver = [0]
    extra = {"txns": 0, "rollbacks": 0, "verified": 0}

    def setup():
        out = db.run("""
.bail off
PRAGMA journal_mode=MEMORY;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-32768;
ATTACH ':memory:' AS m;
CREATE TABLE main.blobs(id INTEGER PRIMARY KEY, n INT NOT NULL, ver INT NOT NULL,
                        src INT NOT NULL, h TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX main.blobs_ver ON blobs(ver);
CREATE TABLE m.blobs(id INTEGER PRIMARY KEY, n INT NOT NULL, ver INT NOT NULL,
                     src INT NOT NULL, h TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX m.blobs_ver ON blobs(ver);
SELECT sqlite_version();""")
        soak.notes.append(f"sqlite {out[-1] if out else '?'}: file db {tables[0].name} "
                          f"({len(tables[0].sizes)} slots, 16 B..256 KiB, page cache 32 MiB, "
                          f"journal in memory) + :memory: db {tables[1].name} "
                          f"({len(tables[1].sizes)} slots, 16 B..64 KiB)")

    def set_sql(t, slot, n, model):
        ver[0] += 1
        v = ver[0]
        if n <= (32 << 10) and rng.random() < 0.25:
            data = random.Random(v).randbytes(n)
            h = hashlib.sha3_256(data).hexdigest().upper()
            model[slot] = (n, v, 1, h)
            return (f"INSERT OR REPLACE INTO {t.name}(id,n,ver,src,h,data) "
                    f"VALUES({slot},{n},{v},1,'{h}',X'{data.hex()}');")
        model[slot] = (n, v, 0, None)
        return (f"INSERT OR REPLACE INTO {t.name}(id,n,ver,src,h,data) "
                f"VALUES({slot},{n},{v},0,'',randomblob({n}));"
                f"UPDATE {t.name} SET h=hex(sha3(data)) WHERE id={slot};")

    def check_rows(t, out, model, checks):
        """Lines 'V|k|count|len|h|sha3|ver' and 'A|count|total' against the model."""
        vi = 0
        for line in out:
            f = line.split("|")
            if f[0] == "V":
                slot, want = checks[vi]
                vi += 1
                cnt, ln, h, sha, v = int(f[2]), int(f[3]), f[4], f[5], int(f[6])
                if want is None:
                    if cnt != 0:
                        raise SoakFailure(f"{t.name} id {slot}: row present, model says deleted")
                    continue
                if cnt != 1 or ln != want[0] or v != want[1] or h != sha or \
                        (want[2] == 1 and sha != want[3]):
                    raise SoakFailure(f"{t.name} id {slot}: read back count {cnt} len {ln} ver "
                                      f"{v} h {h[:16]} sha3 {sha[:16]}; model {want}")
                extra["verified"] += 1
            elif f[0] == "A":
                got = (int(f[1]), int(float(f[2])))
                if got != t.agg(model):
                    raise SoakFailure(f"{t.name}: count/total {got}, model {t.agg(model)}")
        if vi != len(checks):
            raise SoakFailure(f"{t.name}: {vi} of {len(checks)} read-backs answered")

    def txn(t, ops, rollback=False):
        """ops: list of ('set', slot, n) / ('del', slot) / ('get', slot)."""
        model = dict(t.model)
        sql, checks = ["BEGIN;"], []
        for op in ops:
            if op[0] == "set":
                sql.append(set_sql(t, op[1], op[2], model))
            elif op[0] == "del":
                sql.append(f"DELETE FROM {t.name} WHERE id={op[1]};")
                model.pop(op[1], None)
            else:
                checks.append((op[1], model.get(op[1])))
                sql.append(f"SELECT 'V',{op[1]},count(*),coalesce(max(length(data)),-1),"
                           f"coalesce(max(h),''),coalesce(max(hex(sha3(data))),''),"
                           f"coalesce(max(ver),-1) FROM {t.name} WHERE id={op[1]};")
        sql.append(f"SELECT 'A',count(*),total(n) FROM {t.name};")
        sql.append("ROLLBACK;" if rollback else "COMMIT;")
        if rollback:
            sql.append(f"SELECT 'A',count(*),total(n) FROM {t.name};")
        out = db.run("\n".join(sql))
        a_lines = [line for line in out if line.startswith("A|")]
        check_rows(t, [line for line in out if not line.startswith("A|")] + a_lines[:1],
                   model, checks)
        if rollback:
            check_rows(t, a_lines[1:], t.model, [])
            extra["rollbacks"] += 1
        else:
            t.model = model
        extra["txns"] += 1
        soak.ops += len(ops) + 1

    def checksum(t):
        out = db.run(f"SELECT 'C',count(*),total(n),total(length(data)),"
                     f"sum(hex(sha3(data))=h),total(ver) FROM {t.name};"
                     f"SELECT 'H',id,h FROM {t.name} WHERE src=1 ORDER BY id;")
        c = out[0].split("|")
        cnt, tn, tl, good, tv = int(c[1]), int(float(c[2])), int(float(c[3])), \
            int(c[4] or 0), int(float(c[5]))
        want = (len(t.model), sum(v[0] for v in t.model.values()),
                sum(v[1] for v in t.model.values()))
        if (cnt, tn, tv) != want or tl != tn or good != cnt:
            raise SoakFailure(f"{t.name} checksum query: rows {cnt} sizes {tn} lengths {tl} "
                              f"sha3-consistent {good} versions {tv}; model rows {want[0]} "
                              f"sizes {want[1]} versions {want[2]}")
        hs = {int(x.split("|")[1]): x.split("|")[2] for x in out[1:]}
        want_h = {k: v[3] for k, v in t.model.items() if v[2] == 1}
        if hs != want_h:
            bad = [k for k in set(hs) | set(want_h) if hs.get(k) != want_h.get(k)]
            raise SoakFailure(f"{t.name}: sha3 of {len(bad)} driver-written blobs differ "
                              f"from the model (ids {sorted(bad)[:10]})")
        soak.ops += 2

    def one_round(t):
        perm = t.sizes[:]
        rng.shuffle(perm)
        order = list(range(len(perm)))
        rng.shuffle(order)
        deleted, ops = [], []
        for slot in order:
            if slot in t.model and rng.random() < 0.15:
                ops.append(("del", slot))
                deleted.append(slot)
            else:
                ops.append(("set", slot, perm[slot]))
            if rng.random() < 0.3:
                ops.append(("get", order[rng.randrange(len(order))]))
            if len(ops) >= 20:
                if rng.random() < 0.1:
                    # A decoy transaction, rolled back: the model must not move.
                    txn(t, [("set", s, t.sizes[rng.randrange(len(t.sizes))])
                            for s in rng.sample(order, 5)] + [("del", rng.choice(order))],
                        rollback=True)
                txn(t, ops)
                ops = []
        ops += [("set", s, perm[s]) for s in deleted]
        for i in range(0, len(ops), 20):
            txn(t, ops[i:i + 20])
        checksum(t)

    def body():
        setup()
        while True:
            for t in tables:
                one_round(t)
            if soak.rounds % 5 == 4:
                out = db.run("PRAGMA main.integrity_check; PRAGMA m.integrity_check;")
                if out != ["ok", "ok"]:
                    raise SoakFailure(f"integrity_check: {out[:10]}")
            if soak.rounds % 3 == 2:
                db.run("VACUUM m;" if soak.rounds % 9 != 8 else "VACUUM m; VACUUM main;")
            if not soak.after_round():
                break
        soak.notes.append(f"{extra['txns']} transactions ({extra['rollbacks']} rolled back and "
                          f"checked), {extra['verified']} blobs read back and checked; "
                          "checksum query matched the model after every round")

    def stop():
        try:
            soak.proc.stdin.write(b".quit\n")
            soak.proc.stdin.close()
        except OSError:
            pass

    run_guarded(soak, body, stop)
    return soak


# ---------------------------------------------------------------- python

def py_reader(soak, q):
    for line in soak.proc.stdout:
        q.put(line.decode(errors="replace").strip())
    q.put(None)


def case_python(lib, workdir, spbstat):
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else need("python3", "python3")
    soak = Soak("python", lib, workdir, spbstat, 1000000)
    slots = 8000
    script = os.path.join(HERE, "py_churn.py")
    env = preload_env(lib, {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"})
    soak.start([py, script, str(SEED), str(slots)], env, stdin=subprocess.PIPE,
               stdout=subprocess.PIPE)
    q = queue.Queue()
    threading.Thread(target=py_reader, args=(soak, q), daemon=True).start()
    digests = []

    def ask(cmd):
        try:
            soak.proc.stdin.write(f"{cmd}\n".encode())
            soak.proc.stdin.flush()
        except BrokenPipeError:
            soak.crashed("python3 closed its input")
        try:
            line = q.get(timeout=HANG_S)
        except queue.Empty:
            soak.hung(f"python3 {cmd}")
        if line is None:
            soak.crashed(f"python3 ended during {cmd!r}")
        if line.startswith("FAIL"):
            raise SoakFailure(f"python3 workload: {line}")
        return line.split()

    def body():
        k = 0
        while True:
            w = ask(f"round {k}")
            if w[:2] != ["done", str(k)]:
                raise SoakFailure(f"python3 answered {w} to round {k}")
            digests.append(w[2])
            soak.ops += int(w[3])
            k += 1
            if k % 10 == 0:
                w = ask("verify")
                if w[:2] != ["verified", str(slots)]:
                    raise SoakFailure(f"python3 verify answered {w}")
                soak.ops += slots
            if not soak.after_round():
                break
        w = ask("verify")
        if w[:2] != ["verified", str(slots)]:
            raise SoakFailure(f"python3 final verify answered {w}")

    def stop():
        try:
            soak.proc.stdin.write(b"quit\n")
            soak.proc.stdin.close()
        except OSError:
            pass

    run_guarded(soak, body, stop)
    # The same rounds without spbmalloc must give the same digests.
    nref = min(len(digests), 5)
    if nref and not soak.failures:
        envr = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        envr.update({"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"})
        cmds = "".join(f"round {i}\n" for i in range(nref)) + "quit\n"
        p = subprocess.run([py, script, str(SEED), str(slots)], input=cmds.encode(),
                           capture_output=True, env=envr, timeout=HANG_S * 2)
        ref = [line.split()[2] for line in p.stdout.decode().splitlines()
               if line.startswith("done ")]
        if ref != digests[:nref]:
            soak.failures.append(f"round digests differ from a run without spbmalloc: "
                                 f"{digests[:nref]} vs {ref}")
        else:
            soak.notes.append(f"{len(digests)} rounds; digests of rounds 0..{nref - 1} equal "
                              "those of a run without spbmalloc; every live object rebuilt "
                              "and compared every 10 rounds and at the end")
    return soak


# ---------------------------------------------------------------- main

def main():
    if len(sys.argv) not in (4, 5) or sys.argv[1] not in ("redis", "sqlite", "python",
                                                           "programs"):
        print(__doc__)
        return 2
    case, lib, work = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    spbstat = sys.argv[4] if len(sys.argv) == 5 and os.access(sys.argv[4], os.X_OK) else None
    if sys.argv[2] == "none":
        lib = None
    elif not os.path.exists(lib):
        print(f"FAIL: no library at {lib}")
        return 1
    os.makedirs(work, exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    print(f"soak {case}: {MINUTES:g} min, reference checkpoint after "
          f"{min(WARMUP_MIN, MINUTES / 2):g} min, RSS growth limit {MAX_GROWTH:g} %, "
          f"quiesce {QUIESCE_S:g} s, library {lib}", flush=True)
    if case == "redis":
        return case_redis(lib, work, spbstat)
    if case in ("sqlite", "python"):
        fn = case_sqlite if case == "sqlite" else case_python
        return 0 if fn(lib, work, spbstat).report() else 1
    # programs: sqlite and python side by side, each for the whole duration.
    need("sqlite3", "sqlite3")
    if not os.path.exists("/usr/bin/python3"):
        need("python3", "python3")
    results = {}

    def runner(name, fn):
        results[name] = fn(lib, work, spbstat)
    ths = [threading.Thread(target=runner, args=(n, f))
           for n, f in (("sqlite", case_sqlite), ("python", case_python))]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    ok = True
    for name in ("sqlite", "python"):
        ok = results[name].report() and ok
    print(f"soak programs: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
