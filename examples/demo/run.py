#!/usr/bin/python3
"""make demo: an HR export (CSV) kept in step with a real OpenLDAP directory.

Starts a throwaway slapd on 127.0.0.1 (a temporary folder under demo-out/),
syncs 300 people in 12 departments into it through a full cycle, changes a
few people in the HR export (title, department move, rename, one leaves,
one joins), runs a delta cycle, shows what reached the directory and the run
history, and stops the server.

    examples/demo/run.py [IDSYNC-BINARY]
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from fixtures.slapd import Slapd  # noqa: E402  (the test suite's throwaway slapd)

IDSYNC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "build", "idsync")
OUT = os.path.join(TOP, "demo-out", "ldap")


def say(text):
    print("\n\033[1m== %s\033[0m" % text, flush=True)


def idsync(*args, check=True):
    p = subprocess.run([IDSYNC, "-c", "idsync.yaml", *args], cwd=OUT)
    if check and p.returncode not in (0,):
        sys.exit("demo: idsync %s exited with %d" % (" ".join(args), p.returncode))
    return p.returncode


def idsync_output(*args):
    p = subprocess.run([IDSYNC, "-c", "idsync.yaml", *args], cwd=OUT, capture_output=True,
                       text=True)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        sys.exit("demo: idsync %s exited with %d" % (" ".join(args), p.returncode))
    return p.stdout


def show_trimmed(text, head):
    """The run summary, the first `head` lines of the report after it, and
    its totals table (the last paragraph)."""
    parts = text.rstrip("\n").split("\n\n")
    summary, report, totals = parts[0], "\n\n".join(parts[1:-1]), parts[-1]
    lines = report.split("\n")
    print(summary + "\n")
    print("\n".join(lines[:head]))
    if len(lines) > head:
        print("    ... %d more lines of the report ..." % (len(lines) - head))
    print("\n" + totals)


def gen(*extra):
    subprocess.run(["/usr/bin/python3", os.path.join(TOP, "bench", "gen.py"), "--users", "300",
                    "--groups", "12", "--out", "hr", *extra], cwd=OUT, check=True)


def hr_leaver_and_joiner():
    rows = open(os.path.join(OUT, "hr/people.csv"), encoding="utf-8").read().splitlines()
    gone = rows.pop(5).split(",")[0]
    rows.append("E9000001,Nova,Lindqvist,Nova Lindqvist,nova.lindqvist@example.com,"
                "Department 003,Engineer")
    with open(os.path.join(OUT, "hr/people.csv"), "w", encoding="utf-8") as f:
        f.write("\r\n".join(rows) + "\r\n")
    deps = open(os.path.join(OUT, "hr/departments.csv"), encoding="utf-8").read().splitlines()
    out = []
    for line in deps:
        if line.startswith("Department 003,"):
            line += ";E9000001"
        out.append(line.replace(gone + ";", "").replace(";" + gone, ""))
    with open(os.path.join(OUT, "hr/departments.csv"), "w", encoding="utf-8") as f:
        f.write("\r\n".join(out) + "\r\n")
    return gone


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "hr"))
    os.makedirs(os.path.join(OUT, "slapd"))
    server = Slapd(os.path.join(OUT, "slapd"))
    server.seed_base()
    server.start()
    try:
        with open(os.path.join(HERE, "hr-to-ldap.yaml"), encoding="utf-8") as f:
            cfg = f.read()
        cfg = cfg.replace("@PORT@", str(server.port)).replace("@SECRET@", server.password_file)
        with open(os.path.join(OUT, "idsync.yaml"), "w", encoding="utf-8") as f:
            f.write(cfg)

        say("a throwaway OpenLDAP server on %s (data in %s)" % (server.url, server.dir))
        say("HR export: 300 people in 12 departments (%s/hr)" % OUT)
        gen()
        print("".join(open(os.path.join(OUT, "hr/people.csv"), encoding="utf-8")
                      .readlines()[:4]), end="")

        say("idsync check")
        idsync("check")
        say("idsync cycle --dry-run  (what the first cycle would do; nothing is written)")
        show_trimmed(idsync_output("cycle", "--dry-run"), 24)
        say("idsync pending directory  (after the dry run: the store is as it was)")
        idsync("pending", "directory", check=False)
        say("idsync cycle --full  (import, sync, export, confirming import)")
        idsync("cycle", "--full")
        people = server.search("ou=People,dc=example,dc=org", "(objectClass=inetOrgPerson)",
                               ["uid"])
        groups = server.search("ou=Groups,dc=example,dc=org", "(objectClass=groupOfNames)",
                               ["cn"])
        print("the directory now holds %d people and %d groups" % (len(people), len(groups)))

        say("HR changes: 6 people changed (title, department, rename), one leaves, one joins")
        gen("--change", "6")
        gone = hr_leaver_and_joiner()
        print("left: %s; joined: E9000001" % gone)
        idsync("import", "hr")
        idsync("sync")
        say("idsync pending directory  (what the export will send)")
        idsync("pending", "directory")
        say("idsync cycle  (delta)")
        idsync("cycle")
        say("what reached the directory")
        for dn, attrs in server.search("ou=People,dc=example,dc=org",
                                       "(|(uid=e9000001)(uid=e0000125))",
                                       ["uid", "cn", "mail", "ou", "title"]):
            print(dn, {k: v for k, v in sorted(attrs.items())})
        print("uid=%s present: %s" % (gone.lower(), bool(server.search(
            "ou=People,dc=example,dc=org", "(uid=%s)" % gone.lower(), ["uid"]))))
        say("a second delta cycle with no change exports nothing")
        idsync("cycle")
        say("idsync history")
        idsync("history", "--limit", "12")
        say("idsync show mv --where employeeId=E9000001  (lineage of each attribute)")
        idsync("show", "mv", "--where", "employeeId=E9000001")
    finally:
        server.stop()
        print("\nslapd stopped; demo files are in %s" % OUT)


if __name__ == "__main__":
    main()
