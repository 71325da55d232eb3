#!/usr/bin/python3
"""LDAP connector benchmarks against a throwaway slapd (issue 3).

Measured side by side in one run, on this machine:
  1. full read of N slapadd'ed users: idsync (conntool read-full, and
     `idsync import --full` when the CLI is built) / `ldapsearch -E
     pr=1000/noprompt` of the same entries to /dev/null;
  2. export of M adds into an empty slapd: idsync (conntool export,
     pipelined) / `ldapadd -f` of the same entries;
  3. delta read of 100 changes in the N-entry directory (syncrepl);
  and the peak RSS of each idsync process (/usr/bin/time).

    bench/ldap/bench.py [--users 1000000] [--adds 100000] [--out bench/RESULTS.md]

Figures are appended to the output file as a Markdown section.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from fixtures.slapd import Slapd, entry_ldif  # noqa: E402

BUILD = os.environ.get("BUILD", os.path.join(TOP, "build-test"))
CONNTOOL = os.environ.get("CONNTOOL", os.path.join(BUILD, "tests", "tools", "conntool"))
IDSYNC = os.environ.get("IDSYNC", os.path.join(BUILD, "idsync"))
PEOPLE = "ou=People,dc=example,dc=org"


def run(args, stdin=None, stdout=subprocess.DEVNULL, env=None):
    """(seconds, peak RSS in MiB, returncode) of one child process. The peak
    RSS comes from /usr/bin/time: the rusage wait4() gives for a child
    counts the RSS of this Python process the child was forked from."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t0 = time.monotonic()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name] + list(args),
                             stdin=fin, stdout=stdout, stderr=subprocess.PIPE, env=env)
        _, err = p.communicate()
        dt = time.monotonic() - t0
        err = err.decode(errors="replace")
        if fin is not subprocess.DEVNULL:
            fin.close()
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (args[0], p.returncode, err[-2000:]))
        kib = int(rss.read().split()[-1])
    return dt, kib / 1024.0, p.returncode


def user(i):
    return entry_ldif("uid=u%d,%s" % (i, PEOPLE), {
        "objectClass": "inetOrgPerson", "uid": "u%d" % i, "cn": "User %d" % i,
        "sn": "Surname%d" % i, "givenName": "Given%d" % i, "mail": "u%d@example.org" % i,
        "title": "Engineer", "telephoneNumber": "+1 555 %07d" % i})


def config(s, path, extra=""):
    with open(path, "w") as f:
        f.write("""store: sqlite:{d}/idsync.db
connectors:
  dir:
    type: ldap
    url: {url}
    bind_dn: "{dn}"
    password_file: {pw}
    page_size: 1000
    window: 256
{extra}
    objects:
      user:
        base: {people}
        filter: (objectClass=inetOrgPerson)
        attributes: [uid, cn, sn, givenName, mail, title, telephoneNumber]
        object_classes: [inetOrgPerson]
""".format(d=os.path.dirname(path), url=s.url, dn=s.rootdn, pw=s.password_file,
           people=PEOPLE, extra=extra))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000000)
    ap.add_argument("--adds", type=int, default=100000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--out", default=os.path.join(TOP, "bench", "RESULTS.md"))
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="idsync-bench-ldap-")
    rows = []
    notes = []

    # ---- 1. full read ------------------------------------------------------
    s = Slapd(os.path.join(work, "big"))
    s.seed_base()
    ldif = os.path.join(work, "users.ldif")
    with open(ldif, "w") as f:
        for i in range(a.users):
            f.write(user(i))
    t0 = time.monotonic()
    s.slapadd(ldif)
    notes.append("slapadd -q of %d users: %.1f s" % (a.users, time.monotonic() - t0))
    s.start()
    cfg = config(s, os.path.join(work, "big", "idsync.yaml"))
    try:
        # warm the cache once so that both readers see the same state
        run(["ldapsearch", "-x", "-H", s.url, "-D", s.rootdn, "-y", s.password_file, "-b",
             PEOPLE, "-E", "pr=1000/noprompt", "(objectClass=inetOrgPerson)"])
        # the reference is the median of three runs (on this VM one run of
        # the same search took 10.8 to 14.9 s from one bench to the next)
        refs = sorted(run(["ldapsearch", "-x", "-LLL", "-H", s.url, "-D", s.rootdn, "-y",
                           s.password_file, "-b", PEOPLE, "-E", "pr=1000/noprompt",
                           "(objectClass=inetOrgPerson)", "uid", "cn", "sn", "givenName",
                           "mail", "title", "telephoneNumber", "entryUUID"])[0]
                      for _ in range(3))
        base_t = refs[1]
        notes.append("ldapsearch runs: %s (median used)" % " / ".join("%.2f s" % x for x in refs))
        wm_file = os.path.join(work, "big", "watermark.json")
        ct_t, ct_rss, _ = run(["sh", "-c", '"$0" -c "$1" dir read-full | tail -n 1 > "$2"',
                               CONNTOOL, cfg, wm_file])
        rows.append(("full read of %d users" % a.users, "ldapsearch -E pr=1000", base_t,
                     "conntool read-full", ct_t, ct_rss))
        with open(wm_file) as f:
            wm = json.loads(f.read()).get("watermark")
        if os.path.exists(IDSYNC):
            try:
                imps = []
                for _ in range(3):  # each into a new store; the median is used
                    for f in os.listdir(os.path.dirname(cfg)):
                        if f.startswith("idsync.db"):
                            subprocess.run(["rm", "-rf", os.path.join(os.path.dirname(cfg), f)],
                                           check=True)
                    # the previous run's 1 GB of dirty pages are written back
                    # first: their writeback is not this run's cost
                    subprocess.run(["sync"], check=True)
                    imps.append(run([IDSYNC, "-c", cfg, "import", "dir", "--full"]))
                imps.sort()
                imp_t, imp_rss, _ = imps[1]
                notes.append("idsync import --full runs: %s (median used)"
                             % " / ".join("%.2f s" % x[0] for x in imps))
                rows.append(("full import of %d users into the store" % a.users,
                             "ldapsearch -E pr=1000", base_t, "idsync import --full", imp_t,
                             imp_rss))
            except RuntimeError as e:
                notes.append("idsync import failed: %s" % str(e)[:300])

        # ---- 3. delta of N changes (watermark of the full read above) ------
        changes = []
        for i in range(a.changes):
            changes.append("dn: uid=u%d,%s\nchangetype: modify\nreplace: title\n"
                           "title: Changed %d\n" % (i * 997 % a.users, PEOPLE, i))
        s.modify_ldif("\n".join(changes))
        if wm:
            d_t, d_rss, _ = run([CONNTOOL, "-c", cfg, "dir", "read-changes", wm])
            rows.append(("delta read of %d changes in %d users" % (a.changes, a.users), "-",
                         None, "conntool read-changes", d_t, d_rss))
        if any(r[3].startswith("idsync import") for r in rows):
            # the store holds the watermark of its full import: a delta import
            di_t, di_rss, _ = run([IDSYNC, "-c", cfg, "import", "dir"])
            rows.append(("delta import of %d changes in %d users into the store" %
                         (a.changes, a.users), "-", None, "idsync import (delta)", di_t,
                         di_rss))
    finally:
        s.stop()

    # ---- 2. export of M adds -----------------------------------------------
    adds_ldif = os.path.join(work, "adds.ldif")
    adds_json = os.path.join(work, "adds.jsonl")
    with open(adds_ldif, "w") as f, open(adds_json, "w") as g:
        for i in range(a.adds):
            f.write(user(i))
            g.write(json.dumps({"op": "add", "type": "user", "dn": "uid=u%d,%s" % (i, PEOPLE),
                                "mods": [{"op": "add", "attr": k, "values": [v]} for k, v in (
                                    ("objectClass", "inetOrgPerson"), ("uid", "u%d" % i),
                                    ("cn", "User %d" % i), ("sn", "Surname%d" % i),
                                    ("givenName", "Given%d" % i),
                                    ("mail", "u%d@example.org" % i), ("title", "Engineer"),
                                    ("telephoneNumber", "+1 555 %07d" % i))]}) + "\n")
    t1 = Slapd(os.path.join(work, "t1"))
    t1.seed_base()
    t1.start()
    try:
        add_t, _, _ = run(["ldapadd", "-x", "-H", t1.url, "-D", t1.rootdn, "-y",
                           t1.password_file, "-f", adds_ldif])
    finally:
        t1.stop()
    t2 = Slapd(os.path.join(work, "t2"))
    t2.seed_base()
    t2.start()
    try:
        cfg2 = config(t2, os.path.join(work, "t2", "idsync.yaml"))
        ex_t, ex_rss, _ = run([CONNTOOL, "-c", cfg2, "dir", "export"], stdin=adds_json)
        n = len(t2.search(PEOPLE, "(uid=*)", ["1.1"]))
        notes.append("export check: %d of %d entries present after conntool export" %
                     (n, a.adds))
    finally:
        t2.stop()
    rows.append(("export of %d adds into an empty slapd" % a.adds, "ldapadd -f", add_t,
                 "conntool export (window 256)", ex_t, ex_rss))

    # ---- report ---------------------------------------------------------------
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    out = ["", "## LDAP connector (issue 3) — %s" % datetime.datetime.now().strftime(
        "%Y-%m-%d %H:%M"), "",
        "Machine: %s, %d CPUs, %s; slapd %s (mdb, dbnosync); bench/ldap/bench.py "
        "--users %d --adds %d --changes %d." % (cpu, os.cpu_count(), platform.platform(),
                                                "2.5", a.users, a.adds, a.changes), "",
        "| measurement | reference | ref. time | idsync | idsync time | ratio | idsync peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for what, ref, ref_t, ours, our_t, rss in rows:
        ratio = "%.2f" % (our_t / ref_t) if ref_t else "-"
        out.append("| %s | %s | %s | %s | %.2f s | %s | %.0f MiB |" % (
            what, ref, "%.2f s" % ref_t if ref_t else "-", ours, our_t, ratio, rss))
    out.append("")
    for n in notes:
        out.append("- %s" % n)
    out.append("")
    text = "\n".join(out)
    print(text)
    with open(a.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
