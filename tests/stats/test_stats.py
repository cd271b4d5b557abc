#!/usr/bin/env python3
"""Stats segment and spbstat tests.

usage: test_stats.py CASE SPBSTAT HELPER

Each case starts stats_helper (a statically linked spbmalloc program that
allocates what we tell it), reads it with spbstat, and asserts what it
shows. Exit 0 pass, 1 fail, 77 skip.
"""
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

SHM = "/dev/shm/spbmalloc."
PB = 2 << 20


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok - " + msg)


class Helper:
    def __init__(self, helper, env=None, preexec_fn=None):
        e = dict(os.environ)
        e.setdefault("SPBMALLOC_DECAY_MS", "600000")  # no release mid-test
        e.setdefault("SPBMALLOC_STATSEG_DELAY_MS", "0")  # the segment at once
        # No hwloc discovery unless a case asks (case_topology): it allocates
        # on the background thread while a case compares two snapshots.
        e.setdefault("SPBMALLOC_HWLOC", "0")
        e.update(env or {})
        self.p = subprocess.Popen([helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=e, preexec_fn=preexec_fn)
        first = self.p.stdout.readline().split()
        if len(first) != 2 or first[0] != "ready":
            fail("helper did not start: %r" % first)
        self.pid = int(first[1])

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().split()

    def exit(self):
        self.p.stdin.write("exit\n")
        self.p.stdin.flush()
        return self.p.wait(timeout=20)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def run(spbstat, *args, **kw):
    r = subprocess.run([spbstat] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=30, **kw)
    return r.returncode, r.stdout, r.stderr


def snapshot(spbstat, pid):
    rc, out, err = run(spbstat, "--json", pid)
    if rc != 0:
        fail("spbstat --json %d: rc %d: %s" % (pid, rc, err))
    return json.loads(out)


def dead_pid():
    """A pid that is not running: a reaped child's (reuse within the test
    is very unlikely; check anyway)."""
    for _ in range(10):
        p = subprocess.Popen(["true"])
        p.wait()
        try:
            os.kill(p.pid, 0)
        except ProcessLookupError:
            return p.pid
    fail("no dead pid found")


def real_segment_bytes(spbstat, helper):
    h = Helper(helper)
    try:
        with open(SHM + str(h.pid), "rb") as f:
            data = f.read()
        return data, h.pid
    finally:
        h.exit()


def forge(path, data):
    if os.path.lexists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.close(fd)


def layout(helper):
    h = Helper(helper)
    try:
        return json.loads(" ".join(h.cmd("layout")))
    finally:
        h.exit()


# ---- cases ----

def case_json(spbstat, helper):
    h = Helper(helper)
    try:
        check(h.cmd("publish") == ["ok"], "forced publish")
        before = snapshot(spbstat, h.pid)
        check(before["pid"] == h.pid and before["alive"] == 1, "snapshot names the pid, alive")
        check(before["layout_version"] == 2, "layout version 2")
        n, m, k = 5, 3, 4
        out = h.cmd("pattern %d %d %d" % (n, m, k))
        check(out[0] == "pattern" and len(out) == 2 + m, "pattern allocated")
        mov, recl = int(out[1], 16), [int(x, 16) for x in out[2:]]
        check(h.cmd("publish") == ["ok"], "forced publish")
        after = snapshot(spbstat, h.pid)
        c0, c1 = before["counters"], after["counters"]
        check(c1["multi_alloc"] - c0["multi_alloc"] == 1 + m,
              "multi_alloc delta %d == %d" % (c1["multi_alloc"] - c0["multi_alloc"], 1 + m))
        check(c1["pb_claim"] - c0["pb_claim"] >= n + m, "pb_claim delta >= %d" % (n + m))
        check(c1["run_alloc"] - c0["run_alloc"] >= k, "run_alloc delta >= %d" % k)
        g0, g1 = before["gauges"], after["gauges"]
        d = {c: g1["pageblocks_by_class"][c] - g0["pageblocks_by_class"][c]
             for c in ("movable", "reclaimable")}
        check(d["movable"] == n, "movable pageblocks +%d (got %d)" % (n, d["movable"]))
        check(d["reclaimable"] == m, "reclaimable pageblocks +%d (got %d)" % (m, d["reclaimable"]))
        check(g1["pageblocks_by_class"]["unmovable"] >= 1, "an unmovable pageblock")
        spbs = after["spbs"]
        check(g1["nr_spbs"] == len(spbs) == g1["nr_spbs_mapped"],
              "SPB count %d matches the map" % len(spbs))
        check(sum(g1["spbs_by_category"].values()) == g1["nr_spbs"], "categories add up")
        total = {c: sum(s["pageblocks_by_class"][c] for s in spbs)
                 for c in g1["pageblocks_by_class"]}
        check(total == g1["pageblocks_by_class"], "map agrees with the gauges: %s" % total)
        by_base = {int(s["base"], 16): s for s in spbs}
        spb = by_base.get(mov & ~((1 << 30) - 1))
        check(spb is not None, "the movable run's SPB is in the map")
        i = (mov >> 21) & 511
        check(spb["pb_class"][i:i + n] == "M" * n, "pageblocks %d..%d are M" % (i, i + n - 1))
        check(spb["pb_used_pages"][i:i + n] == [512] * n, "and full")
        for a in recl:
            s = by_base.get(a & ~((1 << 30) - 1))
            j = (a >> 21) & 511
            check(s is not None and s["pb_class"][j] == "R" and s["category"] == "tainted",
                  "reclaimable pageblock %#x is R in a tainted SPB" % a)
        check(g1["mapped_bytes"] >= (n + m) * PB, "mapped bytes cover the pattern")
        check(after["gauges"]["publish_count"] > before["gauges"]["publish_count"],
              "publish count grows")
        names = set(c1)
        check({"pb_claim", "spb_taint", "pb_release", "malloc_alloc"} <= names,
              "counters by name (%d)" % len(names))
    finally:
        h.kill()


def case_exit_removes(spbstat, helper):
    h = Helper(helper)
    path = SHM + str(h.pid)
    st = os.stat(path)
    check(stat.S_ISREG(st.st_mode), "segment exists while running")
    check(stat.S_IMODE(st.st_mode) == 0o600, "mode 0600 (got %o)" % stat.S_IMODE(st.st_mode))
    check(st.st_uid == os.geteuid(), "owned by us")
    check(h.exit() == 0, "helper exits 0")
    check(not os.path.exists(path), "segment removed at normal exit")
    rc, out, err = run(spbstat, "--json", h.pid)
    check(rc == 1 and err.strip() == "spbstat: no spbmalloc segment for pid %d" % h.pid,
          "spbstat: no segment -> exit 1 with the message (%r)" % err.strip())


def case_off(spbstat, helper):
    h = Helper(helper, {"SPBMALLOC_STATSEG": "0"})
    try:
        check(not os.path.exists(SHM + str(h.pid)), "SPBMALLOC_STATSEG=0: no segment")
    finally:
        h.exit()


def case_summary(spbstat, helper):
    # No hwloc discovery: it allocates on the background thread (a
    # pageblock of its own), and whether it is done by exit is a race.
    env = dict(os.environ, SPBMALLOC_STATS="1", SPBMALLOC_DECAY_MS="600000",
               SPBMALLOC_HWLOC="0")
    r = subprocess.run([helper], input="pattern 3 2 1\nexit\n", capture_output=True,
                       text=True, env=env, timeout=20)
    pid = int(r.stdout.split()[1])
    lines = r.stderr.splitlines()
    print(r.stderr)
    check(r.returncode == 0 and lines and lines[0].startswith("spbmalloc: summary of pid %d" % pid),
          "SPBMALLOC_STATS=1 prints the summary at exit")
    text = "\n".join(lines)
    check("movable 3, unmovable 1, reclaimable 2" in text, "pageblocks by class")
    check("thp " in text and "backing rung" in text, "pageblocks by rung")
    check("huge pages" in text and "anonymous memory" in text, "huge-page coverage")
    check("SPBs         2 (empty 0, clean 1, tainted 1)" in text, "SPBs by category")
    r = subprocess.run([helper], input="exit\n", capture_output=True, text=True,
                       env=dict(os.environ, SPBMALLOC_STATS="0"), timeout=20)
    check("summary" not in r.stderr, "no summary by default")


def case_gc(spbstat, helper):
    data, _ = real_segment_bytes(spbstat, helper)
    pid = dead_pid()
    path = SHM + str(pid)
    forge(path, data)
    live = Helper(helper)
    try:
        rc, out, err = run(spbstat, "--gc")
        check(rc == 0, "--gc exits 0 (%s)" % err)
        check(not os.path.exists(path), "--gc removed the dead pid's segment")
        check("removed " + path in out, "and said so")
        check(os.path.exists(SHM + str(live.pid)), "--gc kept the live process's segment")
    finally:
        live.exit()
        if os.path.exists(path):
            os.unlink(path)


def case_gc_exec(spbstat, helper):
    h = Helper(helper)
    path = SHM + str(h.pid)
    try:
        h.p.stdin.write("exec\n")
        h.p.stdin.flush()
        for _ in range(50):
            time.sleep(0.05)
            if open("/proc/%d/comm" % h.pid).read().strip() == "sleep":
                break
        check(os.path.exists(path), "exec leaves the segment behind")
        rc, out, err = run(spbstat)
        check(str(h.pid) not in [l.split()[0] for l in out.splitlines()],
              "the list leaves out a process that no longer maps its segment")
        rc, out, err = run(spbstat, "--gc")
        check(rc == 0 and not os.path.exists(path),
              "--gc removes it although the pid lives on (%s)" % out.strip())
    finally:
        h.kill()


def with_forged(spbstat, helper, mutate, expect_rc, expect_msg, what):
    data, _ = real_segment_bytes(spbstat, helper)
    pid = dead_pid()
    path = SHM + str(pid)
    data = mutate(bytearray(data), pid)
    try:
        forge(path, bytes(data))
        rc, out, err = run(spbstat, "--json", pid)
        check(rc == expect_rc and expect_msg in err and out == "",
              "%s: exit %d, %r (got %d, %r)" % (what, expect_rc, expect_msg, rc, err.strip()))
    finally:
        if os.path.exists(path):
            os.unlink(path)


def set_pid(d, pid, off):
    struct.pack_into("<i", d, off["pid"], pid)
    return d


def case_garbled(spbstat, helper):
    off = layout(helper)

    def bad_magic(d, pid):
        d[0:8] = b"GARBAGE!"
        return set_pid(d, pid, off)
    with_forged(spbstat, helper, bad_magic, 1, "bad magic", "garbled magic")

    def bad_offsets(d, pid):
        struct.pack_into("<I", d, off["max_spbs"], 0xffffffff)
        return set_pid(d, pid, off)
    with_forged(spbstat, helper, bad_offsets, 1, "garbled header", "absurd map size")

    def random_body(d, pid):
        d[off["header_size"]:] = os.urandom(len(d) - off["header_size"])
        return set_pid(d, pid, off)
    # a garbled body (after a valid header) must not crash spbstat
    data, _ = real_segment_bytes(spbstat, helper)
    pid = dead_pid()
    path = SHM + str(pid)
    try:
        forge(path, bytes(random_body(bytearray(data), pid)))
        rc, out, err = run(spbstat, "--json", pid)
        check(rc in (0, 1) and (rc == 1 or json.loads(out)["pid"] == pid),
              "random body: clean exit %d, no crash" % rc)
        rc, out, err = run(spbstat, "--text", pid)
        check(rc in (0, 1), "random body, text: clean exit %d" % rc)
    finally:
        os.unlink(path)


def case_truncated(spbstat, helper):
    off = layout(helper)
    with_forged(spbstat, helper, lambda d, pid: set_pid(d, pid, off)[:4096], 1,
                "size mismatch", "truncated to 4096 bytes")
    with_forged(spbstat, helper, lambda d, pid: d[:16], 1, "truncated", "truncated to 16 bytes")
    with_forged(spbstat, helper, lambda d, pid: d[:0], 1, "truncated", "empty file")


def case_version(spbstat, helper):
    off = layout(helper)

    def v99(d, pid):
        struct.pack_into("<I", d, off["version"], 99)
        return set_pid(d, pid, off)
    with_forged(spbstat, helper, v99, 2, "unknown layout version 99 (this spbstat reads 2)",
                "unknown layout version")


def case_symlink(spbstat, helper):
    h = Helper(helper)
    pid = dead_pid()
    path = SHM + str(pid)
    try:
        os.symlink(SHM + str(h.pid), path)
        rc, out, err = run(spbstat, "--json", pid)
        check(rc == 1 and "symbolic link" in err, "symlink refused (%r)" % err.strip())
    finally:
        os.unlink(path)
        h.exit()


def case_inconsistent(spbstat, helper):
    off = layout(helper)

    def odd(d, pid):
        seq = struct.unpack_from("<Q", d, off["seq"])[0]
        struct.pack_into("<Q", d, off["seq"], seq | 1)
        return set_pid(d, pid, off)
    t = time.time()
    with_forged(spbstat, helper, odd, 1, "segment inconsistent (writer died mid-update?)",
                "odd sequence forever")
    check(time.time() - t < 10, "bounded retries")


def user_nobody(why_root):
    """The passwd entry of user nobody; skips the case (77) unless this is
    root (why_root says what for) and the user exists."""
    if os.geteuid() != 0:
        print("SKIP: needs root to " + why_root)
        sys.exit(77)
    import pwd
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        print("SKIP: no user nobody")
        sys.exit(77)


def case_perms(spbstat, helper):
    nobody = user_nobody("make files of another owner")
    h = Helper(helper)
    try:
        path = SHM + str(h.pid)
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "segment mode 0600")
        # root reads anyone's segment (documented, like ps/top): chown a
        # copy to nobody
        data = open(path, "rb").read()
        pid = dead_pid()
        other = SHM + str(pid)
        off = layout(helper)
        forge(other, bytes(set_pid(bytearray(data), pid, off)))
        os.chown(other, nobody.pw_uid, nobody.pw_gid)
        rc, out, err = run(spbstat, "--json", pid)
        check(rc == 0 and json.loads(out)["pid"] == pid, "root reads a segment owned by nobody")

        def as_nobody():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        probe = subprocess.run([spbstat, "--help"], preexec_fn=as_nobody, capture_output=True)
        if probe.returncode != 0:
            print("SKIP rest: nobody cannot run %s" % spbstat)
            os.unlink(other)
            sys.exit(77)
        # nobody vs root's 0600 segment: open fails -> strerror
        r = subprocess.run([spbstat, "--json", str(h.pid)], preexec_fn=as_nobody,
                           capture_output=True, text=True)
        check(r.returncode == 1 and "Permission denied" in r.stderr,
              "another user: permission denied (%r)" % r.stderr.strip())
        # nobody vs a root-owned, world-readable segment: the owner check
        os.chown(other, 0, 0)
        os.chmod(other, 0o644)
        r = subprocess.run([spbstat, "--json", str(pid)], preexec_fn=as_nobody,
                           capture_output=True, text=True)
        check(r.returncode == 1 and "not by you: refused" in r.stderr,
              "a readable segment of another owner is refused (%r)" % r.stderr.strip())
        os.unlink(other)
    finally:
        h.exit()


def case_fork(spbstat, helper):
    # A forked child makes its segment after SPBMALLOC_STATSEG_DELAY_MS (so
    # that children which allocate and _exit leave nothing in /dev/shm).
    h = Helper(helper, {"SPBMALLOC_STATS_INTERVAL_MS": "100",
                        "SPBMALLOC_STATSEG_DELAY_MS": "300"})
    try:
        out = h.cmd("fork")
        check(out[0] == "child", "child started")
        child = int(out[1])
        cpath = SHM + str(child)
        check(child != h.pid and not os.path.exists(cpath),
              "no segment for the child before its first interval")
        for _ in range(100):
            if os.path.exists(cpath):
                break
            time.sleep(0.02)
        time.sleep(0.3)  # and one publish after it
        check(child != h.pid and os.path.exists(cpath),
              "the child has its own segment %s" % cpath)
        cs = snapshot(spbstat, child)
        check(cs["pid"] == child, "the child's segment names the child")
        check(cs["gauges"]["pageblocks_by_class"]["reclaimable"] >= 2,
              "and shows the child's allocation")
        ps = snapshot(spbstat, h.pid)
        check(ps["pid"] == h.pid and ps["gauges"]["pageblocks_by_class"]["reclaimable"] == 0,
              "the parent's segment is untouched by the child")
        check(h.cmd("wait") == ["ok", "0"], "child exited 0")
        check(not os.path.exists(cpath), "the child's segment is removed at its exit")
        check(os.path.exists(SHM + str(h.pid)), "the parent's segment stays")
    finally:
        h.exit()


def case_bgthread(spbstat, helper):
    h = Helper(helper, {"SPBMALLOC_STATS_INTERVAL_MS": "100"})
    try:
        for _ in range(100):  # the thread names itself once it runs
            comms = [open("/proc/%d/task/%s/comm" % (h.pid, t)).read().strip()
                     for t in os.listdir("/proc/%d/task" % h.pid)]
            if "spb-bg" in comms:
                break
            time.sleep(0.02)
        check("spb-bg" in comms, "a thread named spb-bg (%s)" % comms)
        a = snapshot(spbstat, h.pid)
        h.cmd("pattern 2 0 0")
        for _ in range(60):  # 100 ms period: a few rounds, even on a busy machine
            time.sleep(0.1)
            b = snapshot(spbstat, h.pid)
            if b["gauges"]["publish_count"] >= a["gauges"]["publish_count"] + 2:
                break
        check(b["gauges"]["publish_count"] >= a["gauges"]["publish_count"] + 2,
              "the background thread publishes on its own (%d -> %d)"
              % (a["gauges"]["publish_count"], b["gauges"]["publish_count"]))
        check(b["counters"]["multi_alloc"] == a["counters"]["multi_alloc"] + 1,
              "unforced snapshot shows the new allocation")
        tid = [t for t in os.listdir("/proc/%d/task" % h.pid)
               if open("/proc/%d/task/%s/comm" % (h.pid, t)).read().strip() == "spb-bg"][0]
        blk = [l for l in open("/proc/%d/task/%s/status" % (h.pid, tid))
               if l.startswith("SigBlk")][0]
        mask = int(blk.split()[1], 16)
        want = ((1 << 31) - 1) & ~(1 << (signal.SIGKILL - 1)) & ~(1 << (signal.SIGSTOP - 1))
        check(mask & want == want,
              "all signals blocked in spb-bg (%s)" % blk.strip())
    finally:
        h.exit()
    h = Helper(helper, {"SPBMALLOC_BG": "0"})
    try:
        comms = [open("/proc/%d/task/%s/comm" % (h.pid, t)).read().strip()
                 for t in os.listdir("/proc/%d/task" % h.pid)]
        check("spb-bg" not in comms, "SPBMALLOC_BG=0: no background thread")
    finally:
        h.exit()


def case_list(spbstat, helper):
    h = Helper(helper)
    try:
        rc, out, err = run(spbstat)
        lines = [l.split() for l in out.splitlines()]
        check(rc == 0 and lines[0][:2] == ["PID", "COMMAND"], "list header")
        mine = [l for l in lines if l and l[0] == str(h.pid)]
        check(len(mine) == 1 and mine[0][1] == "stats_helper",
              "the helper is listed with its command (%s)" % mine)
    finally:
        h.exit()


def case_vmstat(spbstat, helper):
    h = Helper(helper, {"SPBMALLOC_STATS_INTERVAL_MS": "100"})
    try:
        rc, out, err = run(spbstat, h.pid, "0.3", "3")
        lines = out.splitlines()
        check(rc == 0 and len(lines) == 4, "header + 3 lines (%d)" % len(lines))
        check("allocs/s" in lines[0] and "taint/s" in lines[0], "rate columns")
        rc, out, err = run(spbstat, h.pid, "0.05", "23")
        heads = [l for l in out.splitlines() if "allocs/s" in l]
        check(len(heads) == 2, "a header every 20 lines")
        rc, out, err = run(spbstat, h.pid, "abc")
        check(rc == 2, "bad interval: exit 2")
    finally:
        h.exit()


def case_openmetrics(spbstat, helper):
    h = Helper(helper)
    try:
        h.cmd("pattern 1 1 0")
        h.cmd("publish")
        rc, out, err = run(spbstat, "--openmetrics", h.pid)
        j = snapshot(spbstat, h.pid)
        check(rc == 0 and out.endswith("# EOF\n"), "OpenMetrics ends with # EOF")
        want = 'spbmalloc_counters_pb_claim_total{pid="%d"} %d' % (h.pid, j["counters"]["pb_claim"])
        check(want in out, "same pb_claim as the JSON: %s" % want)
        rc, out, err = run(spbstat, "--text", h.pid)
        check(any(l.split() == ["pb_claim", str(j["counters"]["pb_claim"])]
                  for l in out.splitlines()), "same pb_claim in the text")
    finally:
        h.exit()


def case_live_view(spbstat, helper):
    tmux = shutil.which("tmux")
    if not tmux:
        print("SKIP: tmux is not installed")
        sys.exit(77)
    h = Helper(helper)
    sock = "spbstat-test-%d" % os.getpid()
    T = [tmux, "-L", sock]
    try:
        h.cmd("pattern 3 2 1")
        h.cmd("publish")
        subprocess.run(T + ["new-session", "-d", "-x", "120", "-y", "40",
                            "%s -t %d; sleep 30" % (spbstat, h.pid)], check=True)
        screen = ""
        for _ in range(40):
            time.sleep(0.1)
            screen = subprocess.run(T + ["capture-pane", "-p"], capture_output=True,
                                    text=True).stdout
            if "legend" in screen and "pb_claim" in screen:
                break
        print(screen)
        check("pid %d" % h.pid in screen, "the screen names the pid")
        check("pb_claim" in screen and "spb_taint" in screen, "counter names on screen")
        check("legend" in screen and "movable" in screen and "unmovable" in screen,
              "the map legend")
        rows = screen.splitlines()
        check(any(l.startswith("tainted") and ("R" in l[18:] or "U" in l[18:]) for l in rows),
              "a tainted SPB row showing non-movable pageblocks")
        check(any(l.startswith("clean") and "M" in l[18:] for l in rows),
              "a clean SPB row showing movable pageblocks")
        time.sleep(1.2)  # a redraw
        subprocess.run(T + ["send-keys", "q"], check=True)
        gone = False
        for _ in range(30):
            time.sleep(0.1)
            ps = subprocess.run(T + ["list-panes", "-F", "#{pane_current_command}"],
                                capture_output=True, text=True).stdout
            if "spbstat" not in ps:
                gone = True
                break
        check(gone, "q quits spbstat")
    finally:
        subprocess.run(T + ["kill-server"], capture_output=True)
        h.exit()


def topo_snapshot(spbstat, h):
    """The first snapshot taken after hwloc's discovery (the background
    thread runs it once; a liveness wait, not a timing check)."""
    deadline = time.time() + 60
    while True:
        check(h.cmd("publish") == ["ok"], "forced publish")
        snap = snapshot(spbstat, h.pid)
        if snap["topology"]["source"] == "hwloc" or time.time() > deadline:
            return snap
        time.sleep(0.05)


def case_topology(spbstat, helper):
    kernel_nodes = len([d for d in os.listdir("/sys/devices/system/node")
                        if re.fullmatch(r"node\d+", d)]) or 1
    h = Helper(helper, {"SPBMALLOC_HWLOC": "1"})
    try:
        snap = topo_snapshot(spbstat, h)
        t, c = snap["topology"], snap["counters"]
        print(t["summary"])
        check(t["source"] == "hwloc" and t["synthetic"] == 0, "hwloc's topology of this machine")
        check(c["topo_sysfs"] == 1 and c["topo_hwloc"] == 1 and c["topo_hwloc_fail"] == 0,
              "sysfs first, then hwloc, once")
        check(t["nodes"] == kernel_nodes == snap["gauges"]["nr_zones"],
              "%d nodes, a zone each" % kernel_nodes)
        check(t["pus"] == os.cpu_count(), "%d PUs" % os.cpu_count())
        check(len(t["distances"]) == kernel_nodes and t["distances"][0][0] == 10,
              "node distances")
        check(t["mem_policy"] == "default", "started without a memory policy")
        rc, out, _ = run(spbstat, "--text", h.pid)
        check(rc == 0 and ("summary                      hwloc: ") in out, "the text names it")
    finally:
        h.exit()
    h = Helper(helper, {"SPBMALLOC_HWLOC": "1", "HWLOC_SYNTHETIC": "pack:2 numa:2 core:1 pu:1"})
    try:
        snap = topo_snapshot(spbstat, h)
        t, c = snap["topology"], snap["counters"]
        print(t["summary"])
        check(t["source"] == "hwloc" and t["synthetic"] == 1, "a synthetic topology")
        check((t["nodes"], t["packages"], t["cores"], t["pus"]) == (4, 2, 4, 4),
              "4 nodes, 2 packages, 4 cores, 4 PUs")
        check(snap["gauges"]["nr_zones"] == 4, "4 zones")
        check(c["topo_zone_add"] == 4 - kernel_nodes, "zones added for hwloc's nodes")
        check(t["node_mem_bytes"] == [1 << 30] * 4, "hwloc's synthetic node memory")
        rc, out, _ = run(spbstat, "--text", h.pid)
        check(rc == 0 and "hwloc (synthetic): 2 packages, 4 nodes, 4 cores, 4 PUs" in out
              and "zones 4" in out, "the text line")
    finally:
        h.exit()


# ---- external control: spbstat --set/--get/--trim/--compact ----

def ctl(h, name):
    """spb_ctl(name) read inside the helper."""
    r = h.cmd("ctl " + name)
    if len(r) != 2 or r[0] != "ctl":
        fail("ctl %s: %r" % (name, r))
    return int(r[1])


# Rounds of the background thread 100 ms apart (at most 1 s by default):
# each request is answered sooner.
FAST = {"SPBMALLOC_STATS_INTERVAL_MS": "100"}


def case_ctl_set(spbstat, helper):
    h = Helper(helper, FAST)
    try:
        rc, out, err = run(spbstat, "--set", h.pid, "opt.decay_ms=250")
        check(rc == 0 and out.strip() == "pid %d: opt.decay_ms = 250 (was 600000)" % h.pid,
              "--set opt.decay_ms=250 acknowledged (%r %r)" % (out.strip(), err.strip()))
        check(ctl(h, "opt.decay_ms") == 250, "the process reads 250 through spb_ctl")
        rc, out, err = run(spbstat, "--get", h.pid, "opt.decay_ms")
        check(rc == 0 and out.strip() == "pid %d: opt.decay_ms = 250" % h.pid,
              "--get reads it back (%r)" % out.strip())
        rc, out, err = run(spbstat, "--set", h.pid, "opt.dense_pct=70")
        check(rc == 0 and ctl(h, "opt.dense_pct") == 70, "--set opt.dense_pct=70")
        # refusals: nothing changes, the process says why on its stderr
        for arg, why in (("opt.numa=0", "Operation not permitted"),
                         ("opt.decay_ms=99999999", "Invalid argument"),
                         ("opt.decay_ms=-1", "Invalid argument"),
                         ("opt.no_such=1", "No such file or directory"),
                         ("stats.malloc_alloc=0", "Operation not permitted"),
                         ("trim=1", "Invalid argument")):
            rc, out, err = run(spbstat, "--set", h.pid, arg)
            check(rc == 1 and why in err, "--set %s refused: %r" % (arg, err.strip()))
        check(ctl(h, "opt.decay_ms") == 250 and ctl(h, "opt.numa") == 1,
              "the refused requests changed nothing")
        rc, out, err = run(spbstat, "--get", h.pid, "trim")
        check(rc == 1 and "Invalid argument" in err, "--get of an action is refused")
        rc, out, err = run(spbstat, "--set", h.pid, "opt.decay_ms")
        check(rc == 2, "--set without =VALUE is a usage error")
        check(ctl(h, "stats.ctl_remote") == 10, "10 requests counted")
        check(ctl(h, "stats.ctl_remote_refused") == 7, "7 refusals counted")
        h.cmd("publish")
        snap = snapshot(spbstat, h.pid)
        check(snap["counters"]["ctl_remote"] == 10 and snap["counters"]["ctl_write"] == 2,
              "spbstat --json shows ctl_remote 10 and ctl_write 2")
    finally:
        h.exit()


def case_ctl_trim(spbstat, helper):
    h = Helper(helper)
    try:
        h.cmd("big 64")
        mapped = ctl(h, "engine.mapped_bytes")
        released = ctl(h, "stats.pb_release") + ctl(h, "stats.spb_unmap")
        rc, out, err = run(spbstat, "--trim", h.pid)
        words = out.split()
        # pageblocks released, or (when the 64 MiB was all the SPB held, as
        # in sanitizer builds, where malloc is not ours) the SPB unmapped
        check(rc == 0 and len(words) > 3 and words[2] == "trim:" and int(words[3]) >= 1,
              "--trim gave back the freed 64 MiB (%r)" % out.strip())
        check(ctl(h, "stats.pb_release") + ctl(h, "stats.spb_unmap") >= released + int(words[3]),
              "pb_release + spb_unmap grew by what it said")
        after = ctl(h, "engine.mapped_bytes")
        check(after <= mapped - (32 << 20),
              "engine.mapped_bytes fell from %d to %d" % (mapped, after))
    finally:
        h.exit()


def case_ctl_compact(spbstat, helper):
    h = Helper(helper, {"SPBMALLOC_COMPACT": "0"})  # no thread compacting first
    try:
        h.cmd("handles 20000")
        moved = ctl(h, "stats.compact_moved")
        rc, out, err = run(spbstat, "--compact", h.pid)
        words = out.split()
        check(rc == 0 and len(words) > 3 and words[2] == "compact:" and int(words[3]) > 0,
              "--compact moved bytes (%r %r)" % (out.strip(), err.strip()))
        check(ctl(h, "stats.compact_moved") > moved, "compact_moved grew")
        check(h.cmd("stamped") == ["ok", "1"], "every handle object keeps its stamp")
    finally:
        h.exit()


def case_ctl_garbled(spbstat, helper):
    """Requests written straight into the segment's control slot: the
    process answers each with an error, counts it, and lives on."""
    import mmap
    off = layout(helper)
    base = off["ctl"]
    h = Helper(helper, FAST)
    try:
        fd = os.open(SHM + str(h.pid), os.O_RDWR)
        m = mmap.mmap(fd, off["header_size"] + 64)
        os.close(fd)

        def u64(name):
            return struct.unpack_from("<Q", m, base + off[name])[0]

        def request(op, name, seq_delta=1, value=0):
            ack = u64("ctl_ack_seq")
            struct.pack_into("<I", m, base + off["ctl_op"], op)
            struct.pack_into("<q", m, base + off["ctl_value"], value)
            m[base + off["ctl_name"]:base + off["ctl_name"] + 64] = name.ljust(64, b"\0")[:64]
            seq = ack + seq_delta
            struct.pack_into("<Q", m, base + off["ctl_req_seq"], seq)
            for _ in range(500):
                if u64("ctl_ack_seq") == seq:
                    return struct.unpack_from("<i", m, base + off["ctl_status"])[0]
                time.sleep(0.01)
            fail("no answer to a request with seq %d" % seq)

        import errno
        check(request(2, b"a" * 64) == errno.EINVAL, "a name without a NUL: EINVAL")
        check(request(1, b"zzz.nothing") == errno.ENOENT, "an unknown name: ENOENT")
        check(request(1, b"opt.decay_ms\n\xff") == errno.EINVAL, "bytes outside [a-z0-9._]: EINVAL")
        check(request(99, b"opt.decay_ms") == errno.EINVAL, "an unknown operation: EINVAL")
        check(request(1, b"opt.decay_ms", seq_delta=5) == errno.EPROTO,
              "a wrong sequence number: EPROTO")
        check(request(2, b"opt.decay_ms", value=1 << 62) == errno.EINVAL,
              "a value out of range: EINVAL")
        # garbage over the whole slot, sequence number included
        rnd = os.urandom(off["ctl_size"])
        m[base:base + off["ctl_size"]] = rnd
        seq = u64("ctl_req_seq")
        for _ in range(500):
            if u64("ctl_ack_seq") == seq:
                break
            time.sleep(0.01)
        check(u64("ctl_ack_seq") == seq and
              struct.unpack_from("<i", m, base + off["ctl_status"])[0] != 0,
              "random bytes over the slot: answered with an error")
        struct.pack_into("<i", m, base + off["ctl_lock"], 0)  # the garbage took the lock
        m.close()
        check(h.p.poll() is None, "the process lives on")
        check(ctl(h, "opt.decay_ms") == 600000, "nothing changed")
        check(ctl(h, "stats.ctl_remote") == 7, "7 requests counted")
        check(ctl(h, "stats.ctl_remote_refused") == 7, "7 refusals counted")
        # and the slot still works
        rc, out, err = run(spbstat, "--set", h.pid, "opt.decay_ms=300")
        check(rc == 0 and ctl(h, "opt.decay_ms") == 300,
              "a good request after them is served (%r)" % err.strip())
    finally:
        h.exit()


def case_ctl_nobg(spbstat, helper):
    h = Helper(helper, {"SPBMALLOC_BG": "0"})
    try:
        rc, out, err = run(spbstat, "--set", h.pid, "opt.decay_ms=250",
                           env=dict(os.environ, SPBSTAT_CTL_TIMEOUT_MS="500"))
        check(rc == 1 and "did not acknowledge" in err,
              "SPBMALLOC_BG=0: not acknowledged (%r)" % err.strip())
        check(ctl(h, "opt.decay_ms") == 600000, "and nothing changed")
    finally:
        h.exit()


def case_ctl_timeout(spbstat, helper):
    """A requester gives up while the process is still running its request
    (a compaction waiting for a grace period): the next requester must not
    reuse its sequence number, or it reads the late answer of the first as
    its own and its own request never runs."""
    import mmap
    off = layout(helper)
    base = off["ctl"]
    h = Helper(helper, dict(FAST, SPBMALLOC_COMPACT="0"))
    try:
        h.cmd("handles 20000")
        check(h.cmd("rlock") == ["ok"], "the helper is in a read section")
        rc, out, err = run(spbstat, "--compact", h.pid,
                           env=dict(os.environ, SPBSTAT_CTL_TIMEOUT_MS="1000"))
        check(rc == 1 and "did not acknowledge" in err,
              "--compact waits for the section and times out (%r %r)" % (out, err.strip()))
        check(ctl(h, "stats.ctl_remote") == 1, "the process took the request and runs it")
        b = subprocess.Popen([spbstat, "--set", str(h.pid), "opt.decay_ms=300"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, SPBSTAT_CTL_TIMEOUT_MS="30000"))
        # Let the second request reach the slot if it is going to (the old
        # protocol wrote it at once; a fixed spbstat waits for the answer).
        fd = os.open(SHM + str(h.pid), os.O_RDONLY)
        m = mmap.mmap(fd, off["header_size"], prot=mmap.PROT_READ)
        os.close(fd)
        name = base + off["ctl_name"]
        for _ in range(200):
            if m[name:name + 13] == b"opt.decay_ms\0":
                break
            time.sleep(0.01)
        m.close()
        check(h.cmd("runlock") == ["ok"], "the helper leaves its read section")
        out, err = b.communicate(timeout=60)
        check(b.returncode == 0 and
              out.strip() == "pid %d: opt.decay_ms = 300 (was 600000)" % h.pid,
              "the second request answered for itself (%r %r)" % (out.strip(), err.strip()))
        check(ctl(h, "opt.decay_ms") == 300, "and it ran: opt.decay_ms is 300")
        check(ctl(h, "stats.ctl_remote") == 2, "two requests run")
    finally:
        h.exit()


def case_ctl_perms(spbstat, helper):
    nobody = user_nobody("run a process as another user")

    def as_nobody():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
    probe = subprocess.run([helper], input="exit\n", preexec_fn=as_nobody,
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print("SKIP: nobody cannot run %s" % helper)
        sys.exit(77)
    h = Helper(helper)  # root's process: nobody cannot open its segment
    try:
        r = subprocess.run([spbstat, "--set", str(h.pid), "opt.decay_ms=250"],
                           preexec_fn=as_nobody, capture_output=True, text=True)
        check(r.returncode == 1 and "Permission denied" in r.stderr,
              "another user cannot send requests (%r)" % r.stderr.strip())
    finally:
        h.exit()
    h = Helper(helper, preexec_fn=as_nobody)  # nobody's process: root is refused too
    try:
        rc, out, err = run(spbstat, "--set", h.pid, "opt.decay_ms=250")
        check(rc == 1 and "only its owner" in err,
              "root is refused on another user's process (%r)" % err.strip())
        check(ctl(h, "opt.decay_ms") == 600000, "nothing changed")
    finally:
        h.exit()


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    case, spbstat, helper = sys.argv[1:]
    fn = globals().get("case_" + case)
    if not fn:
        print("no such case: " + case)
        return 2
    fn(spbstat, helper)
    print("PASS: " + case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
