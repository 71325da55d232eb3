#!/usr/bin/python3
"""SCIM connector benchmarks (issue 4), against the SCIMMY test service
(tests/integration/scim/server.js) on this machine:

  1. export of N creates (10k and 100k): idsync's export step vs a plain
     keep-alive load generator (loadgen.js, 8 concurrent) against the same
     service in the same run (each on an empty service): the ratio of rates;
  2. idsync's own ceiling: the same export against an HTTP sink that
     answers every request at once (sink.c, libmicrohttpd);
  3. full import of 100k users from the service (idsync import --full);
  4. a delta cycle with 100 changes (CSV -> SCIM, 100k users provisioned);
with times and peak RSS of each idsync process. Figures are appended to
bench/RESULTS.md with --results.

  /usr/bin/python3 bench/scim/bench.py --idsync build/idsync [--users 100000]
      [--small 10000] [--results bench/RESULTS.md]
"""
import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
SCIM_DIR = os.path.join(TOP, "tests", "integration", "scim")
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from fixtures.scim import ensure_node_modules  # noqa: E402

TOKEN = "bench-token-0123456789"

CONFIG = """store: sqlite:{dir}/idsync.db
connectors:
  hr:
    type: csv
    objects:
      person:
        path: {dir}/people.csv
        key: employeeId
        attributes: [employeeId, givenName, sn, mail]
  cloud:
    type: scim
    url: {url}
    token_file: {dir}/token
    concurrency: {concurrency}
    page_size: 500
    bulk: {bulk}
    objects:
      User:
        attributes: [userName, externalId, displayName, name.givenName, name.familyName, emails]
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ {{ employeeId: employeeId }} ]
        flow: {{ employeeId: employeeId, givenName: givenName, sn: sn, mail: mail }}
    to:
      - connector: cloud
        object: User
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ {{ externalId: employeeId }} ]
        flow:
          externalId: employeeId
          userName: mail
          displayName: 'givenName .. " " .. sn'
          name.givenName: givenName
          name.familyName: sn
          emails: '{{ {{value = mail, type = "work", primary = true}} }}'
safety:
  max_deletes: 0
  max_delete_percent: 0
  import_max_delete_percent: 0
"""

SOURCE_CONFIG = """store: sqlite:{dir}/idsync-src.db
connectors:
  cloud:
    type: scim
    url: {url}
    token_file: {dir}/token
    concurrency: {concurrency}
    page_size: 500
    objects:
      User:
        attributes: [userName, externalId, displayName, name.givenName, name.familyName, emails]
"""


def start(args):
    p = subprocess.Popen(["node"] + args, cwd=SCIM_DIR, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening "):
        p.kill()
        raise RuntimeError("could not start %s: %r" % (args, line))
    return p, int(line.split()[1])


def stop(p):
    p.terminate()
    p.wait()


def timed(cmd, env=None):
    """Run cmd; (seconds, peak RSS MiB of that process, stdout). The peak RSS
    comes from /usr/bin/time: the rusage wait4() gives for a child counts
    the RSS of this (large) Python process the child was forked from."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t0 = time.time()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name] + list(cmd),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        out, err = p.communicate()
        secs = time.time() - t0
        if p.returncode not in (0, 1):
            raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, err[-2000:]))
        kib = int(rss.read().split()[-1])
    return secs, kib / 1024.0, out


def write_people(path, n, changed=()):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["employeeId", "givenName", "sn", "mail"])
        for i in range(n):
            sn = "Changed%d" % i if i in changed else "Family%d" % i
            w.writerow(["E%d" % i, "Given%d" % i, sn, "u%d@example.com" % i])


def http(method, url):
    import urllib.request
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        text = r.read().decode()
        return json.loads(text) if text else None


def loadgen(url, n, prefix):
    out = subprocess.run(["node", os.path.join(HERE, "loadgen.js"), "--url", url, "--token",
                          TOKEN, "--n", str(n), "--concurrency", "8", "--prefix", prefix],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


class Run:
    def __init__(self, idsync, base_dir, url, concurrency, bulk="no"):
        self.idsync = idsync
        self.dir = tempfile.mkdtemp(prefix="run-", dir=base_dir)
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(TOKEN)
        self.cfg = os.path.join(self.dir, "idsync.yaml")
        with open(self.cfg, "w") as f:
            f.write(CONFIG.format(dir=self.dir, url=url, concurrency=concurrency, bulk=bulk))

    def idsync_cmd(self, *args):
        return timed([self.idsync, "-c", self.cfg, *args])


def export_bench(idsync, base, url, n, concurrency, bulk="no"):
    """Provision n users (import + sync untimed), then time the export."""
    r = Run(idsync, base, url, concurrency, bulk)
    write_people(os.path.join(r.dir, "people.csv"), n)
    r.idsync_cmd("import", "hr", "--full")
    r.idsync_cmd("sync", "--full")
    secs, rss, _ = r.idsync_cmd("export", "cloud")
    return r, secs, rss


def export_repeated(idsync, base, url, n, concurrency, bulk, times=3):
    """Provision n users once (import + sync untimed), then time the export
    `times` times, each from a copy of the provisioned store and after
    `sync` (the previous steps' dirty pages are not the export's cost).
    Returns the sorted [(seconds, peak RSS MiB)]."""
    r = Run(idsync, base, url, concurrency, bulk)
    write_people(os.path.join(r.dir, "people.csv"), n)
    r.idsync_cmd("import", "hr", "--full")
    r.idsync_cmd("sync", "--full")
    saved = os.path.join(r.dir, "provisioned")
    os.mkdir(saved)
    names = [x for x in os.listdir(r.dir) if x.startswith("idsync.db")]
    for x in names:
        subprocess.run(["cp", "-a", os.path.join(r.dir, x), saved], check=True)
    out = []
    for _ in range(times):
        for x in os.listdir(r.dir):
            if x.startswith("idsync.db"):
                subprocess.run(["rm", "-rf", os.path.join(r.dir, x)], check=True)
        for x in names:
            subprocess.run(["cp", "-a", os.path.join(saved, x), r.dir], check=True)
        os.sync()
        secs, rss, _ = r.idsync_cmd("export", "cloud")
        out.append((secs, rss))
    return sorted(out)


def sink_ceiling(a, base, rows):
    """idsync's export against a sink that answers at once (C, libmicrohttpd):
    one request per create, then /Bulk requests; the median of three runs."""
    sink_bin = os.path.join(base, "sink")
    subprocess.run(["cc", "-O2", os.path.join(HERE, "sink.c"), "-lmicrohttpd", "-ljansson", "-o",
                    sink_bin], check=True)
    for bulk in ("no", "auto"):
        sink = subprocess.Popen([sink_bin, "0"] + (["bulk"] if bulk == "auto" else []),
                                stdout=subprocess.PIPE, text=True)
        try:
            sport = int(sink.stdout.readline().split()[1])
            runs = export_repeated(a.idsync, base, "http://127.0.0.1:%d/scim/v2" % sport,
                                   a.users, a.concurrency, bulk)
            secs, rss = runs[len(runs) // 2]
            rows.append(("export of %d creates to an instant HTTP sink, %s" % (
                a.users, "one request each" if bulk == "no" else "in /Bulk requests of 50"),
                "-", "-", "idsync export cloud (concurrency %d, bulk: %s)" % (a.concurrency, bulk),
                "%.1f s (%.0f/s), median of %s" % (
                    secs, a.users / secs, " / ".join("%.2f s" % x[0] for x in runs)),
                "-", "%.0f MiB" % max(x[1] for x in runs)))
            print(rows[-1], flush=True)
        finally:
            stop(sink)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idsync", default=os.path.join(TOP, "build", "idsync"))
    ap.add_argument("--users", type=int, default=100000)
    ap.add_argument("--small", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--results")
    ap.add_argument("--sink-only", action="store_true", help="only the ceiling measurement")
    a = ap.parse_args()
    ensure_node_modules()
    base = tempfile.mkdtemp(prefix="idsync-scim-bench-")
    rows = []
    notes = []
    svc = None
    try:
        if a.sink_only:
            sink_ceiling(a, base, rows)
            for r in rows:
                print(r)
            return
        def fresh_service():
            """Each measurement gets a service process of its own: node's heap
            after 100k creates and a reset is not the one a new process has,
            and whoever ran second would pay for the first."""
            nonlocal svc
            if svc is not None:
                stop(svc)
            svc, port = start(["server.js", "--port", "0", "--token", TOKEN])
            return "http://127.0.0.1:%d" % port

        big_run = None
        for n in (a.small, a.users):
            svc_base = fresh_service()
            url = svc_base + "/scim/v2"
            lg = loadgen(url, n, "lg%d-" % n)
            svc_base = fresh_service()
            url = svc_base + "/scim/v2"
            r, secs, rss = export_bench(a.idsync, base, url, n, a.concurrency)
            stats = http("GET", svc_base + "/_stats")
            if stats["users"] != n:
                notes.append("export check FAILED: %d users in the service after %d creates"
                             % (stats["users"], n))
            else:
                notes.append("export check: %d of %d users present, no duplicate (service count)"
                             % (stats["users"], n))
            rate = n / secs
            rows.append(("export of %d creates" % n,
                         "loadgen.js keep-alive, 8 concurrent", "%.1f s (%.0f/s)" % (
                             lg["seconds"], lg["rate"]),
                         "idsync export cloud (concurrency %d, bulk: no)" % a.concurrency,
                         "%.1f s (%.0f/s)" % (secs, rate), "%.2f" % (rate / lg["rate"]),
                         "%.0f MiB" % rss))
            print(rows[-1], flush=True)
            big_run = r
            # the default: creates in /Bulk requests
            svc_base = fresh_service()
            url = svc_base + "/scim/v2"
            rb, bsecs, brss = export_bench(a.idsync, base, url, n, a.concurrency, "auto")
            bstats = http("GET", svc_base + "/_stats")
            notes.append("bulk export check: %d of %d users present" % (bstats["users"], n))
            rows.append(("export of %d creates" % n, "the same load generator", "-",
                         "idsync export cloud (concurrency %d, bulk: auto, 50 per /Bulk)"
                         % a.concurrency, "%.1f s (%.0f/s)" % (bsecs, n / bsecs),
                         "%.2f" % ((n / bsecs) / lg["rate"]), "%.0f MiB" % brss))
            print(rows[-1], flush=True)
            if n == a.users:
                big_run = rb
        # full import of the users now in the service
        src = tempfile.mkdtemp(prefix="src-", dir=base)
        with open(os.path.join(src, "token"), "w") as f:
            f.write(TOKEN)
        scfg = os.path.join(src, "idsync.yaml")
        with open(scfg, "w") as f:
            f.write(SOURCE_CONFIG.format(dir=src, url=url, concurrency=a.concurrency))
        secs, rss, _ = timed([a.idsync, "-c", scfg, "import", "cloud", "--full"])
        rows.append(("full import of %d users from the service" % a.users, "-", "-",
                     "idsync import cloud --full (page_size 500)", "%.1f s (%.0f/s)" % (
                         secs, a.users / secs), "-", "%.0f MiB" % rss))
        print(rows[-1], flush=True)
        # a delta cycle with 100 changes
        changed = set(range(0, a.users, max(1, a.users // 100)))
        write_people(os.path.join(big_run.dir, "people.csv"), a.users, changed)
        secs, rss, _ = big_run.idsync_cmd("cycle")
        n_changed = sum(1 for u in http("GET", svc_base + "/_dump")["Users"]
                        if u.get("name", {}).get("familyName", "").startswith("Changed"))
        notes.append("delta check: %d of %d changed users updated in the service"
                     % (n_changed, len(changed)))
        rows.append(("delta cycle, %d changes in %d users" % (len(changed), a.users), "-", "-",
                     "idsync cycle (includes the confirming full import of the SCIM side)",
                     "%.1f s" % secs, "-", "%.0f MiB" % rss))
        print(rows[-1], flush=True)
        stop(svc)
        svc = None
        sink_ceiling(a, base, rows)
    finally:
        if svc is not None:
            stop(svc)
        shutil.rmtree(base, ignore_errors=True)
    if a.results:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        with open(a.results, "a") as f:
            f.write("\n## SCIM connector (issue 4) — %s\n\n" %
                    datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
            f.write("Machine: %s, %d CPUs, %s; SCIMMY test service (node %s, express 4, "
                    "in-memory store); bench/scim/bench.py --users %d --small %d "
                    "--concurrency %d.\n\n" % (platform.processor() or platform.machine(),
                                               os.cpu_count(), platform.platform(), node,
                                               a.users, a.small, a.concurrency))
            f.write("| measurement | reference | ref. time | idsync | idsync time | ratio "
                    "(idsync rate / reference rate) | idsync peak RSS |\n")
            f.write("| --- | --- | --- | --- | --- | --- | --- |\n")
            for row in rows:
                f.write("| " + " | ".join(row) + " |\n")
            f.write("\n")
            for n in notes:
                f.write("- %s\n" % n)


if __name__ == "__main__":
    main()
