"""Notification channels (issue 5): the webhook (JSON POST to a real HTTP
server on loopback) and a mail server that cannot be reached (logged and
written into the run's message, never failing the run).

A guard stop is the problem: the source CSV loses every row, so the full
import guard stops the import (exit 2) in every cycle.
"""
import http.server
import json
import threading

from conftest import write_csv, write_yaml

CONFIG = """
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: src/people.csv
        key: oid
        attributes: [oid, mail]
  cloud:
    type: csv
    settle: 0
    objects:
      user:
        path: cloud/users.csv
        key: oid
        attributes: [oid, mail]
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ {{ oid: oid }} ]
        flow: {{ oid: oid, mail: mail }}
    to:
      - connector: cloud
        object: user
        provision: true
        deprovision: delete
        flow: {{ oid: oid, mail: mail }}
notify:
{notify}
"""


def make_env(workdir, notify):
    write_yaml(workdir / "idsync.yaml", CONFIG.format(notify=notify))
    (workdir / "cloud").mkdir(exist_ok=True)
    write_csv(workdir / "src/people.csv", ["oid", "mail"], people(20))


def last_cycle(idsync):
    return next(r for r in idsync("history", "--json").json()["runs"] if r["step"] == "cycle")


def people(n):
    return [["E%03d" % i, "user%d@example.org" % i] for i in range(n)]


class Hook(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_once_per_problem(workdir, idsync):
    Hook.received = []
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        make_env(workdir, "  webhook: http://127.0.0.1:%d/hooks/idsync" % srv.server_port)
        assert idsync("cycle").code == 0
        assert Hook.received == []

        write_csv(workdir / "src/people.csv", ["oid", "mail"], [])
        r = idsync("cycle")
        assert r.code == 2, r
        assert len(Hook.received) == 1
        ctype, doc = Hook.received[0]
        assert ctype == "application/json"
        assert doc["event"] == "idsync.problems"
        assert doc["run"]["step"] == "cycle"
        assert doc["new_problems"] == 1
        p = doc["problems"][0]
        assert p["kind"] == "stopped-threshold" and p["connector"] == "hr"
        assert "would delete 20 of 20" in p["message"]
        assert doc["command"].endswith("errors %d" % doc["run"]["id"])

        r = idsync("cycle")  # the same stop again: no second report
        assert r.code == 2
        assert len(Hook.received) == 1
    finally:
        srv.shutdown()
        srv.server_close()


def test_unreachable_mail_server_does_not_fail_the_run(workdir, idsync):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_env(workdir, "  smtp: smtp://127.0.0.1:%d\n  from: idsync@example.org\n"
                   "  to: [admins@example.org]" % port)
    assert idsync("cycle").code == 0
    write_csv(workdir / "src/people.csv", ["oid", "mail"], [])
    r = idsync("cycle")
    assert r.code == 2, r  # the guard's status, not a notification failure
    assert "notify" in r.err and "127.0.0.1:%d" % port in r.err
    run = last_cycle(idsync)
    assert run["status"] == "stopped-threshold"
    assert "Notifying the administrators failed" in run["message"]
    # not marked as sent: the next cycle tries again
    r = idsync("cycle")
    run = last_cycle(idsync)
    assert "Notifying the administrators failed" in run["message"]
