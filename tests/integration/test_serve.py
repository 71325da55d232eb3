"""`idsync serve` (issue 6): the daemon running real cycles between CSV files
and an LDIF journal, its JSON API, /metrics, `idsync sync-now`, automatic
full steps after a configuration change, the run lock, the bearer token and
TLS.

What is asserted is what an administrator would check: the target files,
what the API and `sync-now` say, exit statuses and the log.
"""
import json
import os
import re
import signal
import subprocess
import urllib.parse

import pytest

from conftest import (IDSYNC, free_port, read_csv, run_idsync, wait_until, write_csv,
                      write_yaml)

CONFIG = """
store: sqlite:idsync.db
schedule: {schedule}
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: src/people.csv
        key: employeeId
        attributes: [{hr_attributes}]
  target:
    type: csv
    settle: 0
    objects:
      user:
        path: out/users.csv
        key: id
        attributes: [id, externalId, displayName, mail, title]
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join:
          - employeeId: employeeId
        flow:
          employeeId: employeeId
          displayName: '{display}'
          mail: mail
          title: title
    to:
      - connector: target
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join:
          - externalId: employeeId
          - mail: mail
        flow:
          id: employeeId
          externalId: employeeId
          displayName: displayName
          mail: mail
          title: title
safety:
  max_deletes: {max_deletes}
  max_delete_percent: 0
  import_max_delete_percent: 90
serve:
  listen: 127.0.0.1:{port}
{serve_extra}
"""

HR_ATTRS = "employeeId, givenName, sn, mail, title"
DISPLAY = 'givenName .. " " .. sn'


def person(i, **kw):
    p = {"id": "E%04d" % i, "given": "Given%d" % i, "sn": "Family%d" % i,
         "mail": "user%d@example.com" % i, "title": "Engineer"}
    p.update(kw)
    return p


def write_people(workdir, people):
    write_csv(workdir / "src/people.csv",
              ["employeeId", "givenName", "sn", "mail", "title", "department"],
              [[p["id"], p["given"], p["sn"], p["mail"], p["title"], "D%d" % (i % 3)]
               for i, p in enumerate(people)])


def write_config(workdir, port, schedule="1h", hr_attributes=HR_ATTRS, display=DISPLAY,
                 max_deletes=500, serve_extra=""):
    write_yaml(workdir / "idsync.yaml", CONFIG.format(
        schedule=schedule, hr_attributes=hr_attributes, display=display,
        max_deletes=max_deletes, port=port, serve_extra=serve_extra))


def prepare(workdir, n=20, **kw):
    port = free_port()
    people = [person(i) for i in range(1, n + 1)]
    write_config(workdir, port, **kw)
    write_people(workdir, people)
    os.makedirs(workdir / "out", exist_ok=True)
    return port, people


def target_rows(workdir):
    return read_csv(workdir / "out/users.csv", "id")


def run_children(d, run_id):
    return d.get("/api/runs/%d" % run_id)["children"]


# ---- the daemon, status, runs, metrics ----------------------------------------


def test_first_cycle_status_runs_and_metrics(workdir, serve_daemon):
    port, people = prepare(workdir)
    d = serve_daemon(port)
    st = d.wait_idle()
    rows = target_rows(workdir)
    assert set(rows) == {p["id"] for p in people}
    assert rows["E0003"]["displayName"] == "Given3 Family3"

    assert st["state"] == "idle" and st["pid"] == d.proc.pid
    assert st["listen"] == "127.0.0.1:%d" % port and st["auth"] is False
    assert st["config"]["schedule_seconds"] == 3600
    assert st["last_cycle"]["status"] == "success"
    assert st["last_cycle"]["counters"]["export-add"] == 20
    # next run: one interval after the start of the first cycle
    assert 3500_000 < st["next_run"] - st["last_cycle"]["start"] <= 3600_000
    assert st["last_success"] >= st["last_cycle"]["start"]

    runs = d.get("/api/runs?limit=100")["runs"]
    cycle = [r for r in runs if r["step"] == "cycle"]
    assert len(cycle) == 1
    # first run of the daemon on this store: full import of each connector and
    # a full sync, each saying why, then the delta cycle
    auto = [r for r in runs if r["parent"] is None and r["step"] != "cycle"]
    assert sorted((r["step"], r["connector"]) for r in auto) == [
        ("full-import", "hr"), ("full-import", "target"), ("full-sync", None)]
    for r in auto:
        assert r["message"].startswith("Automatic full "), r
        assert "no fingerprint of the" in r["message"], r
        assert "is recorded yet" in r["message"], r

    detail = d.get("/api/runs/%d" % cycle[0]["id"])
    steps = [(c["step"], c["connector"]) for c in detail["children"]]
    assert ("export", "target") in steps and ("delta-sync", None) in steps
    export = next(c for c in detail["children"] if c["step"] == "export")
    assert export["counters"]["export-add"] == 20 and export["errors"] == 0
    assert detail["total_errors"] == 0

    # paging through history with next_before returns every run once
    seen, before = [], 0
    while True:
        page = d.get("/api/runs?limit=3&before=%d" % before)
        seen += [r["id"] for r in page["runs"]]
        if page["next_before"] is None:
            break
        before = page["next_before"]
    assert sorted(seen, reverse=True) == seen and len(set(seen)) == len(runs)

    series = d.get("/api/runs/series?limit=10")["series"]
    assert series[-1]["id"] == cycle[0]["id"]
    assert series[-1]["counters"]["export-add"] == 20

    conns = {c["name"]: c for c in d.get("/api/connectors")["connectors"]}
    assert conns["target"]["cs_objects"] == 20 and conns["target"]["pending_exports"] == 0
    assert conns["hr"]["source"] is True and conns["target"]["target"] is True
    assert conns["target"]["last_runs"]["export"]["counters"]["export-add"] == 20

    status, text = d.request("GET", "/metrics", raw=True)
    assert status == 200
    metrics = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    assert metrics["idsync_up"] == 1
    assert metrics["idsync_last_successful_cycle_timestamp_seconds"] * 1000 >= \
        st["last_cycle"]["start"]
    assert metrics['idsync_pending_exports{connector="target"}'] == 0
    assert metrics['idsync_connector_space_objects{connector="target"}'] == 20
    assert metrics["idsync_metaverse_objects"] == 20
    assert metrics['idsync_last_run_objects{step="export",connector="target",'
                   'counter="export-add"}'] == 20
    assert metrics['idsync_last_run_duration_seconds{step="cycle",connector=""}'] >= 0
    assert metrics['idsync_runs_total{step="cycle",connector="",status="success"}'] == 1
    assert metrics['idsync_objects_processed_total{step="export",connector="target",'
                   'counter="export-add"}'] == 20
    assert d.stop() == 0
    assert "event=serve-stop" in d.log()


def test_sync_now_wait_prints_the_result_and_exits_like_cycle(workdir, serve_daemon, idsync):
    port, people = prepare(workdir)
    d = serve_daemon(port, args=["--no-initial-cycle"])
    st = d.status()
    assert st["state"] == "idle" and st["last_cycle"] is None
    assert st["next_run"] > st["started"] + 3500_000  # first cycle one interval away
    assert not os.path.exists(workdir / "out/users.csv")

    code, out, err = idsync("sync-now", "--wait")
    assert code == 0, (out, err)
    assert re.search(r"cycle run \d+: success", out), out
    assert "export" in out and "export-add=20" in out, out
    assert len(target_rows(workdir)) == 20

    people.append(person(21, title="Intern"))
    write_people(workdir, people)
    code, out, err = idsync("--json", "sync-now", "--wait")
    assert code == 0, err
    res = json.loads(out)
    assert res["state"] == "done" and res["status"] == "success" and res["exit_code"] == 0
    assert res["total_counters"]["export-add"] == 1
    assert target_rows(workdir)["E0021"]["title"] == "Intern"

    # without --wait: queued, and it runs
    code, out, err = idsync("--json", "sync-now")
    assert code == 0, err
    req = json.loads(out)
    assert req["state"] in ("queued", "running", "done")
    assert d.wait_request(req["id"])["status"] == "success"


def test_sync_now_without_daemon_says_so(workdir, idsync):
    prepare(workdir)
    code, out, err = idsync("sync-now", "--wait")
    assert code == 4, (code, out, err)
    assert "cannot reach the idsync daemon" in err and "idsync serve" in err


def test_search_paging_and_lineage(workdir, serve_daemon):
    port, people = prepare(workdir)
    d = serve_daemon(port)
    d.wait_idle()

    # metaverse: a bare value finds objects by their join attribute
    found = d.get("/api/mv?q=E0003")
    assert [o["display"] for o in found["objects"]] == ["Given3 Family3"]
    mv_id = found["objects"][0]["id"]
    # attr=value works on any attribute
    found = d.get("/api/mv?q=" + urllib.parse.quote("mail=USER3@example.com"))
    assert [o["id"] for o in found["objects"]] == [mv_id]
    assert d.get("/api/mv?q=%d" % mv_id)["objects"][0]["id"] == mv_id
    assert d.get("/api/mv?q=nobody")["objects"] == []

    # the object with its lineage
    mv = d.get("/api/mv/%d" % mv_id)
    attrs = {a["name"]: a for a in mv["attributes"]}
    dn = attrs["displayName"]
    assert dn["values"] == ["Given3 Family3"]
    assert dn["source"]["connector"] == "hr" and dn["source"]["object"] == "person"
    assert dn["source"]["rule"] == DISPLAY and dn["source"]["plain"] is False
    assert attrs["mail"]["source"]["plain"] is True
    links = {l["connector"]: l for l in mv["links"]}
    assert links["hr"]["role"] == "source" and links["hr"]["anchor"] == "E0003"
    assert dn["source"]["cs_id"] == links["hr"]["id"]
    assert links["target"]["role"] == "target" and "provisioned" in links["target"]["flags"]
    out = mv["outbound"][0]
    assert out["connector"] == "target" and out["cs_id"] == links["target"]["id"]
    assert {"attr": "displayName", "rule": "displayName"} in out["flows"]
    assert mv["exports"] == []

    # the connector-space object, and back to the metaverse
    cs = d.get("/api/cs/%d" % links["target"]["id"])
    assert cs["anchor"] == "E0003" and cs["mv"]["id"] == mv_id
    cattrs = {a["name"]: a["values"] for a in cs["attributes"]}
    assert cattrs["displayName"] == ["Given3 Family3"]
    assert d.get("/api/cs?connector=hr&q=E0003")["objects"][0]["id"] == links["hr"]["id"]
    assert d.get("/api/cs?connector=hr&anchor=E9999")["objects"] == []

    # server-side paging: every object once, in pages of 7
    ids, after = [], 0
    while True:
        page = d.get("/api/cs?connector=target&limit=7&after=%d" % after)
        assert page["total"] == 20 and len(page["objects"]) <= 7
        ids += [o["id"] for o in page["objects"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert len(ids) == 20 and len(set(ids)) == 20 and ids == sorted(ids)
    ids, after = [], 0
    while True:
        page = d.get("/api/mv?limit=6&after=%d" % after)
        ids += [o["id"] for o in page["objects"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert len(set(ids)) == 20

    # errors of the API itself
    assert d.request("GET", "/api/mv/999999")[0] == 404
    assert d.request("GET", "/api/cs?connector=nope")[0] == 404
    assert d.request("GET", "/api/runs?limit=x")[0] == 400
    assert d.request("GET", "/api/nothing")[0] == 404


def test_errors_with_filters(workdir, serve_daemon):
    port, people = prepare(workdir, n=5)
    # two target rows share person 2's mail: an ambiguous join (an error) on
    # top of a malformed source row
    os.makedirs(workdir / "out", exist_ok=True)
    (workdir / "out/users.csv").write_text(
        "id,externalId,displayName,mail,title\r\n"
        "X1,,Twin One,user2@example.com,\r\n"
        "X2,,Twin Two,user2@example.com,\r\n", encoding="utf-8")
    with open(workdir / "src/people.csv", "a", encoding="utf-8", newline="") as f:
        f.write('E0100,"Broken,Row,user100@example.com,X\r\n')
    d = serve_daemon(port, args=["--no-initial-cycle"])
    req = d.cycle()
    assert req["status"] == "completed-with-errors" and req["exit_code"] == 1

    # the errors are in the steps of the request (here the automatic full
    # steps of the first cycle, before the cycle itself)
    steps = req["steps"]
    assert any(s.get("automatic") for s in steps)
    assert sum(s["counters"]["errors"] for s in steps) >= 2
    errs = []
    for step in steps:
        if step["counters"]["errors"]:
            errs += d.get("/api/runs/%d/errors" % step["id"])["errors"]
    codes = {e["code"] for e in errs}
    assert "ambiguous-join" in codes, errs
    amb = next(e for e in errs if e["code"] == "ambiguous-join")

    page = d.get("/api/runs/%d/errors?code=ambiguous-join" % amb["run"])
    assert page["total"] >= 1 and all(e["code"] == "ambiguous-join" for e in page["errors"])
    page = d.get("/api/runs/%d/errors?code=no-such-code" % amb["run"])
    assert page["total"] == 0 and page["errors"] == []
    page = d.get("/api/runs/%d/errors?q=USER2@example" % amb["run"])
    assert page["errors"] and all("user2@example" in json.dumps(e) for e in page["errors"])
    # newest run with errors by default
    assert d.get("/api/errors")["errors"]


def test_pending_exports_and_dry_run_report(workdir, serve_daemon, idsync):
    port, people = prepare(workdir, n=40, max_deletes=5)
    d = serve_daemon(port)
    d.wait_idle()
    before = (workdir / "out/users.csv").read_text(encoding="utf-8")

    # 10 deletions > max_deletes 5: the export stops, the deletes stay pending
    write_people(workdir, people[:30])
    code, out, err = idsync("sync-now", "--wait")
    assert code == 2, (code, out, err)
    assert (workdir / "out/users.csv").read_text(encoding="utf-8") == before
    pend = d.get("/api/pending?connector=target&limit=4")
    assert pend["total"] == 10 and len(pend["objects"]) == 4
    assert all(o["change"]["op"] == "delete" for o in pend["objects"])
    allp, after = [], 0
    while True:
        page = d.get("/api/pending?connector=target&limit=4&after=%d" % after)
        allp += [o["anchor"] for o in page["objects"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sorted(allp) == ["E%04d" % i for i in range(31, 41)]
    report = d.get("/api/pending/report?connector=target")
    assert report["total"] == 10
    assert {r["op"] for r in report["report"]} == {"delete"}
    conns = {c["name"]: c for c in d.get("/api/connectors")["connectors"]}
    assert conns["target"]["pending_exports"] == 10
    status, text = d.request("GET", "/metrics", raw=True)
    assert 'idsync_pending_exports{connector="target"} 10' in text

    # a dry run reports and changes nothing
    people2 = people[:30]
    people2[0]["title"] = "Director"
    write_people(workdir, people2)
    req = d.cycle(dry_run=True)
    assert req["dry_run"] and req["report_bytes"] > 0
    rep = d.get("/api/requests/%d/report" % req["id"])
    text = json.dumps(rep["report"])
    assert "Director" in text
    assert (workdir / "out/users.csv").read_text(encoding="utf-8") == before


# ---- configuration changes, reload -----------------------------------------


def test_scope_and_rule_changes_run_full_steps_with_reason(workdir, serve_daemon):
    port, people = prepare(workdir)
    d = serve_daemon(port)
    d.wait_idle()
    first = d.get("/api/runs?limit=1")["runs"][0]["id"]

    # a quiet cycle: no automatic full step
    req = d.cycle()
    runs = d.get("/api/runs?limit=50")["runs"]
    assert not [r for r in runs if r["id"] > first and r["parent"] is None
                and r["step"] != "cycle"]

    # the scope of hr grows (department): full import of hr only
    write_config(workdir, port, hr_attributes=HR_ATTRS + ", department")
    d.signal(signal.SIGHUP)
    wait_until(lambda: "event=config-reload " in d.log(), 30, what="reload")
    last = d.get("/api/runs?limit=1")["runs"][0]["id"]
    req = d.cycle()
    assert req["status"] == "success"
    auto = [r for r in d.get("/api/runs?limit=50")["runs"]
            if r["id"] > last and r["parent"] is None and r["step"] != "cycle"]
    assert [(r["step"], r["connector"]) for r in auto] == [("full-import", "hr")], auto
    assert "scope of connector hr" in auto[0]["message"]
    assert "changed since the last cycle" in auto[0]["message"]
    hr = d.get("/api/cs?connector=hr&q=E0002")["objects"][0]
    cs = d.get("/api/cs/%d" % hr["id"])
    assert {a["name"]: a["values"] for a in cs["attributes"]}["department"] == ["D1"]
    assert cs["staged_reference_changes"] is None  # synced: nothing recorded

    # a rule changes: full sync, and every object gets the new value
    write_config(workdir, port, hr_attributes=HR_ATTRS + ", department",
                 display='sn .. ", " .. givenName')
    status, _ = d.post("/api/reload")
    assert status == 202
    wait_until(lambda: d.log().count("event=config-reload ") == 2, 30, what="reload")
    last = d.get("/api/runs?limit=1")["runs"][0]["id"]
    req = d.cycle()
    auto = [r for r in d.get("/api/runs?limit=50")["runs"]
            if r["id"] > last and r["parent"] is None and r["step"] != "cycle"]
    assert [(r["step"], r["connector"]) for r in auto] == [("full-sync", None)], auto
    assert "metaverse rules" in auto[0]["message"]
    rows = target_rows(workdir)
    assert all(rows[p["id"]]["displayName"] == "%s, %s" % (p["sn"], p["given"])
               for p in people)


def test_sighup_with_a_broken_file_keeps_the_old_configuration(workdir, serve_daemon):
    port, people = prepare(workdir)
    d = serve_daemon(port)
    d.wait_idle()
    good = (workdir / "idsync.yaml").read_text(encoding="utf-8")
    (workdir / "idsync.yaml").write_text(good.replace("connectors:", "connectors: [oops\n"),
                                         encoding="utf-8")
    d.signal(signal.SIGHUP)
    st = wait_until(lambda: (lambda s: s if s["config"]["reload_error"] else None)(
        d.status()), 30, what="the reload to be rejected")
    assert "idsync.yaml:" in st["config"]["reload_error"]
    assert "event=config-reload-rejected" in d.log() and "keeping=previous" in d.log()
    status, text = d.request("GET", "/metrics", raw=True)
    assert "idsync_config_reload_failed 1" in text

    # the old configuration keeps running cycles
    people.append(person(21))
    write_people(workdir, people)
    assert d.cycle()["status"] == "success"
    assert "E0021" in target_rows(workdir)
    assert d.proc.poll() is None

    # a good file is taken again
    (workdir / "idsync.yaml").write_text(good, encoding="utf-8")
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.status()["config"]["reload_error"] is None, 30,
               what="the reload to be accepted")


# ---- lock, SIGTERM in the middle of an export ---------------------------------

LDIF_CONFIG = """
store: sqlite:idsync.db
schedule: 1h
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: src/people.csv
        key: employeeId
        attributes: [employeeId, givenName, sn, mail, title]
  dir:
    type: ldif
    settle: 0
    path: out/changes.ldif
    objects:
      user:
        object_class: inetOrgPerson
        attributes: [objectClass, uid, cn, sn, mail, title]
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ { employeeId: employeeId } ]
        flow: { employeeId: employeeId, givenName: givenName, sn: sn, mail: mail, title: title }
    to:
      - connector: dir
        object: user
        provision: true
        deprovision: delete
        flow:
          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",ou=People,dc=example,dc=com"'
          objectClass: '{ "inetOrgPerson" }'
          uid: lower(employeeId)
          cn: 'givenName .. " " .. sn'
          sn: sn
          mail: mail
          title: title
serve:
  listen: 127.0.0.1:%d
"""


def ldif_adds(path):
    text = open(path, encoding="utf-8").read().replace("\r\n", "\n")
    dns = []
    for block in re.split(r"\n\n+", text):
        lines = [l for l in block.split("\n") if l and not l.startswith("#")]
        if lines and lines[0].startswith("dn:") and "changetype: add" in lines:
            dns.append(lines[0])
    return dns


def big_ldif_setup(workdir, n):
    port = free_port()
    write_yaml(workdir / "idsync.yaml", LDIF_CONFIG % port)
    write_people(workdir, [person(i) for i in range(1, n + 1)])
    os.makedirs(workdir / "out", exist_ok=True)
    return port


def running_step(d, step):
    st = d.status()
    rs = st.get("running_step")
    return rs if rs and rs["step"] == step else None


def test_sigterm_during_export_then_restart_loses_and_repeats_nothing(workdir, serve_daemon):
    n = 60000
    port = big_ldif_setup(workdir, n)
    d = serve_daemon(port)
    step = wait_until(lambda: running_step(d, "export"), 120, 0.02, "the export to start")
    assert step["connector"] == "dir" and 0 < step["pending_exports_left"] <= n, step
    d.signal(signal.SIGTERM)
    assert d.proc.wait(120) == 0
    log = d.log()
    assert "action=stop-after-current-batch" in log and "event=serve-stop" in log

    # the export was cut short: its run says so, and part of the work is done
    hist = run_idsync("--json", "history", "--limit", "50", config=workdir / "idsync.yaml",
                      cwd=workdir).json()
    runs = hist["runs"] if isinstance(hist, dict) else hist
    export = next(r for r in runs if r["step"] == "export")
    sent = export["counters"]["export-add"]
    assert export["status"] == "failed" and 0 < sent < n, export
    assert len(ldif_adds(workdir / "out/changes.ldif")) == sent

    # restart: the first cycle completes the work
    d2 = serve_daemon(port)
    st = d2.wait_idle(300)
    assert st["last_cycle"]["status"] == "success", st["last_cycle"]
    dns = ldif_adds(workdir / "out/changes.ldif")
    assert len(dns) == n and len(set(dns)) == n
    # and the next one sends nothing
    d2.cycle()
    assert len(ldif_adds(workdir / "out/changes.ldif")) == n


def test_one_run_at_a_time_across_processes(workdir, serve_daemon, idsync):
    port = big_ldif_setup(workdir, 40000)
    d = serve_daemon(port)
    wait_until(lambda: d.status()["running_cycle"], 60, 0.02, "the cycle to start")
    code, out, err = idsync("cycle")
    assert code != 0, (out, err)
    assert "lock" in (out + err).lower() or "busy" in (out + err).lower(), (out, err)
    assert str(d.proc.pid) in out + err  # names the holder
    st = d.wait_idle(300)
    assert st["last_cycle"]["status"] == "success"
    # once the daemon is idle the command line may run
    code, out, err = idsync("cycle")
    assert code == 0, (out, err)


# ---- token, TLS, address ------------------------------------------------------


def test_non_loopback_address_needs_a_token(workdir, idsync):
    port, _ = prepare(workdir)
    text = (workdir / "idsync.yaml").read_text(encoding="utf-8")
    (workdir / "idsync.yaml").write_text(text.replace("127.0.0.1:%d" % port,
                                                      "0.0.0.0:%d" % port), encoding="utf-8")
    code, out, err = idsync("serve", timeout=30)
    assert code == 3, (code, out, err)
    assert "not a loopback address" in err and "token_file" in err


def test_bearer_token(workdir, serve_daemon, idsync):
    token = "s3cret-token-0123456789abcdef"
    (workdir / "api.token").write_text(token + "\n", encoding="utf-8")
    port, _ = prepare(workdir, serve_extra="  token_file: api.token")
    d = serve_daemon(port, token=token)
    d.wait_idle()
    assert d.request("GET", "/api/status", token=False)[0] == 401
    assert d.request("GET", "/metrics", token=False)[0] == 401
    assert d.request("GET", "/api/status",
                     headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
    assert d.request("GET", "/api/status")[0] == 200
    # the console's static files need no token; the API behind them does
    assert d.request("GET", "/", token=False, raw=True)[0] == 200
    code, out, err = idsync("sync-now", "--wait")
    assert code == 0, (out, err)
    assert token not in d.log()


def test_tls(workdir, serve_daemon, idsync):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(workdir / "key.pem"), "-out", str(workdir / "cert.pem")],
                   check=True, capture_output=True)
    port, _ = prepare(workdir, serve_extra="  tls_cert_file: cert.pem\n"
                                         "  tls_key_file: key.pem")
    d = serve_daemon(port, scheme="https", cafile=str(workdir / "cert.pem"))
    st = d.wait_idle()
    assert st["tls"] is True
    code, out, err = idsync("sync-now", "--wait")
    assert code == 0, (out, err)
    assert "success" in out


def test_reconnect_preview_through_the_api(workdir, serve_daemon):
    """The HR system is rebuilt: every person has a new key, same mail. The
    guard stops the cycle; the API previews `reconnect --by mail`."""
    port, people = prepare(workdir, n=12)
    d = serve_daemon(port)
    d.wait_idle()
    rebuilt = [dict(p, id="N%04d" % (i + 1)) for i, p in enumerate(people)]
    write_people(workdir, rebuilt)
    plan = d.get("/api/reconnect/preview?connector=hr&by=mail")
    assert plan["totals"]["re-anchor"] == 12, plan["totals"]
    assert plan["totals"]["ambiguous"] == 0
    assert {row["anchor"] for row in plan["rows"] if row["action"] == "re-anchor"} == \
        {p["id"] for p in rebuilt}
    assert plan["rows_total"] == len(plan["rows"]) >= 12
    # a page at a time: a rebuilt directory of a million is a million rows
    pages = []
    for offset in range(0, plan["rows_total"], 5):
        page = d.get("/api/reconnect/preview?connector=hr&by=mail&offset=%d&limit=5" % offset)
        assert page["rows_total"] == plan["rows_total"] and page["offset"] == offset
        assert page["totals"] == plan["totals"]  # the whole plan's
        assert 1 <= len(page["rows"]) <= 5
        pages += page["rows"]
    assert [r["fingerprint"] for r in pages] == [r["fingerprint"] for r in plan["rows"]]
    past = d.get("/api/reconnect/preview?connector=hr&by=mail&offset=%d" % plan["rows_total"])
    assert past["rows"] == [] and past["rows_total"] == plan["rows_total"]
    # a preview changes nothing: the target still holds the old people
    assert set(target_rows(workdir)) == {p["id"] for p in people}
    refused = None
    try:
        d.get("/api/reconnect/preview?connector=hr")
    except Exception as e:  # the fixture raises on HTTP errors
        refused = str(e)
    assert refused is not None and ("400" in refused or "by=" in refused), refused
