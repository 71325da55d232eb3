"""The command line (issue 4): usage errors, configuration errors with their
FILE:LINE:COL, exit statuses, and a CSV -> CSV cycle driven through every
read-only command (history, show cs, show mv, errors, pending, preview) to
check that what they print, as text and as JSON, agrees.
"""
import json
import os

import pytest

from conftest import read_csv, run_idsync, write_csv, write_file, write_yaml

CONFIG = """
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: src/people.csv
        key: employeeId
        attributes: [employeeId, givenName, sn, mail, title]
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
          displayName: 'givenName .. " " .. sn'
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
        flow:
          id: employeeId
          externalId: employeeId
          displayName: displayName
          mail: mail
          title: title
"""

HEADER = ["employeeId", "givenName", "sn", "mail", "title"]


def person(i, title="Engineer"):
    return ["E%04d" % i, "Given%d" % i, "Family%d" % i, "user%d@example.com" % i, title]


@pytest.fixture
def csv_env(workdir):
    """A CSV -> CSV configuration with three people; the target not created yet."""
    write_yaml(workdir / "idsync.yaml", CONFIG)
    write_csv(workdir / "src/people.csv", HEADER, [person(i) for i in range(1, 4)])
    os.makedirs(workdir / "out", exist_ok=True)
    return workdir


# ---- usage errors -----------------------------------------------------------


def usage_error(r, phrase):
    assert r.code == 3, r
    assert r.err.startswith("idsync: ") and phrase in r.err.splitlines()[0], r.err
    assert "usage: idsync" in r.err, r.err


@pytest.mark.parametrize("args, phrase", [
    (["frobnicate"], 'unknown command "frobnicate"'),
    (["import", "--bogus", "hr"], "unknown option --bogus"),
    (["import", "--full=yes", "hr"], "option --full takes no value"),
    (["history", "-z"], "unknown option -z"),
    (["-x", "check"], "unknown option -x"),
    (["history", "--limit"], "option --limit needs a value"),
    (["history", "--limit", "many"], '--limit: "many" is not a number'),
    (["import"], "import needs a CONNECTOR"),
    (["export"], "export needs a CONNECTOR"),
    (["pending"], "pending needs a CONNECTOR"),
    (["preview", "hr"], "preview needs a CONNECTOR and an ANCHOR or DN"),
    (["show"], "show needs cs or mv"),
    (["show", "xx"], 'unknown object kind "xx"'),
    (["show", "mv"], "show mv needs an ID or --where ATTR=VALUE"),
    (["show", "mv", "--where", "novalue"], "--where takes ATTR=VALUE"),
    (["show", "cs", "hr"], "show cs needs a CONNECTOR and an ANCHOR or DN"),
    (["sync", "extra"], 'unexpected argument "extra"'),
    (["sync", "--dry-run"], "sync does not take --dry-run"),
    (["import", "hr", "--dry-run"], "import does not take --dry-run"),
    (["export", "target", "--allow-deletes", "-5"], '--allow-deletes: "-5" is not a number'),
    (["config"], "config needs dump or docs"),
    (["config", "burn"], 'config: unknown action "burn"'),
    (["--log-format", "xml", "check"], '--log-format: "xml" is not logfmt or json'),
    (["check", "-c"], "option -c needs a value"),
])
def test_usage_errors(csv_env, idsync, args, phrase):
    usage_error(idsync(*args), phrase)


def test_unknown_connector_is_a_usage_error_naming_the_configured_ones(csv_env, idsync):
    r = idsync("import", "payroll")
    usage_error(r, 'no connector named "payroll"')
    assert "(connectors: hr, target)" in r.err


def test_no_command_prints_help_and_fails(csv_env, idsync):
    r = idsync()
    assert r.code == 3
    assert "usage: idsync" in r.err and "cycle" in r.err


def test_help_and_version(csv_env, idsync):
    r = idsync("--help")
    assert r.code == 0 and r.err == ""
    for cmd in ("check", "cycle", "import", "sync", "export", "pending", "preview", "show",
                "history", "errors", "config", "reconnect", "serve"):
        assert "\n  %s " % cmd in r.out, cmd
    r = idsync("import", "--help")
    assert r.code == 0
    assert "usage: idsync [options] import CONNECTOR [--full] [--allow-deletes N]" in r.out
    r = idsync("help", "history")
    assert r.code == 0 and "history [RUN] [--limit N]" in r.out
    r = idsync("--version")
    assert r.code == 0 and r.out.startswith("idsync ")


def test_usage_error_as_json(csv_env, idsync):
    r = idsync("history", "--limit", "--json")
    # --json is global, so --limit got no value
    assert r.code == 3
    doc = r.json()
    assert doc["error"] == "usage" and "--limit" in doc["message"]


def test_global_options_after_the_command(csv_env, idsync):
    r = run_idsync("history", "--json", "-c", str(csv_env / "idsync.yaml"), "--limit", "5",
                   cwd="/")
    assert r.code == 0, r
    assert r.json() == {"runs": []}
    r = run_idsync("history", "--config=%s" % (csv_env / "idsync.yaml"), "-q", cwd="/")
    assert r.code == 0, r
    assert "No runs yet." in r.out


# ---- configuration errors ----------------------------------------------------


def test_missing_config_file_is_named(workdir, idsync):
    r = idsync("check", config=workdir / "nope.yaml")
    assert r.code == 3
    assert "idsync: %s: no such configuration file" % (workdir / "nope.yaml") in r.err


def test_default_config_comes_from_the_environment_then_the_folder(csv_env):
    r = run_idsync("history", cwd="/", env={"IDSYNC_CONFIG": str(csv_env / "idsync.yaml")})
    assert r.code == 0, r
    r = run_idsync("history", cwd=str(csv_env))  # ./idsync.yaml
    assert r.code == 0, r
    r = run_idsync("history", cwd="/")
    assert r.code == 3 and "idsync.yaml: no such configuration file" in r.err


BASE = """\
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    objects:
      person:
        path: people.csv
        key: employeeId
        attributes: [employeeId, mail]
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        flow:
          employeeId: employeeId
          mail: mail
"""

LITERAL_PASSWORD = """\
store: sqlite:idsync.db
connectors:
  dir:
    type: ldap
    url: ldap://127.0.0.1:3389
    bind_dn: cn=admin,dc=example,dc=com
    password: hunter2
    base: dc=example,dc=com
    objects:
      user:
        filter: (objectClass=person)
        attributes: [uid, mail]
metaverse: {}
"""


@pytest.mark.parametrize("name, text, where, phrase", [
    ("syntax", BASE.replace("[employeeId, mail]", "[employeeId, mail"), "10:10",
     "YAML syntax error"),
    ("unknown-key", BASE.replace("key: employeeId", "key: employeeId\n        colour: blue"),
     "9:9", "unknown key `colour`"),
    ("undefined-connector", BASE.replace("- connector: hr", "- connector: payroll"), "13:20",
     "undefined connector `payroll` (expected one of: hr)"),
    ("undefined-attribute", BASE.replace("mail: mail\n", "mail: email\n"), "18:17",
     "reads `email`, which is not in connectors.hr.objects.person.attributes"),
    ("bad-expression", BASE.replace("mail: mail\n", "mail: 'lower(mail'\n"), "18:17",
     "`lower(mail`: ')' expected"),
    ("literal-password", LITERAL_PASSWORD, "7:15",
     "a secret must not be written in the configuration file"),
])
def test_broken_configuration(workdir, name, text, where, phrase):
    path = write_file(workdir / (name + ".yaml"), text)
    write_file(workdir / "people.csv", "employeeId,mail\r\n")
    for cmd in (["check"], ["cycle"], ["config", "dump"], ["history"]):
        r = run_idsync(*cmd, config=path, cwd=str(workdir))
        assert r.code == 3, (cmd, r)
        assert "idsync: %s:%s: " % (path, where) in r.err, (cmd, r.err)
        assert phrase in r.err, r.err
        assert r.out == ""
    assert "hunter2" not in r.err
    r = run_idsync("check", "--json", config=path, cwd=str(workdir))
    assert r.code == 3
    doc = r.json()
    assert doc["error"] == "config"
    assert doc["message"].startswith("%s:%s: " % (path, where)) and phrase in doc["message"]


def test_relative_config_path_is_named_as_given(workdir):
    write_file(workdir / "bad.yaml", BASE.replace("- connector: hr", "- connector: payroll"))
    r = run_idsync("check", config="bad.yaml", cwd=str(workdir))
    assert r.code == 3 and "idsync: bad.yaml:13:20: " in r.err


# ---- unreachable ------------------------------------------------------------


def test_store_that_cannot_be_opened_exits_4(workdir):
    write_file(workdir / "people.csv", "employeeId,mail\r\nE1,a@example.com\r\n")
    path = write_file(workdir / "idsync.yaml",
                      BASE.replace("sqlite:idsync.db", "sqlite:/nonexistent-idsync-dir/x/idsync.db"))
    for cmd in (["cycle"], ["import", "hr"], ["sync"], ["history"], ["errors"],
                ["show", "mv", "1"], ["pending", "hr"]):
        r = run_idsync(*cmd, config=path, cwd=str(workdir))
        assert r.code == 4, (cmd, r)
        assert "idsync: " in r.err and "/nonexistent-idsync-dir/x/idsync.db" in r.err, r.err
    r = run_idsync("check", config=path, cwd=str(workdir))
    assert r.code == 4
    assert "store sqlite:/nonexistent-idsync-dir/x/idsync.db" in r.out
    assert "connector hr (csv)" in r.out  # the connectors are still checked
    r = run_idsync("cycle", "--json", config=path, cwd=str(workdir))
    assert r.code == 4
    assert r.json()["error"] == "unreachable"


def test_check_reports_each_connector_and_an_unreachable_ldap_server(workdir):
    write_file(workdir / "people.csv", "employeeId,mail\r\nE1,a@example.com\r\n")
    write_file(workdir / "dir.secret", "s3cr3t-value\n")
    text = """\
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: people.csv
        key: employeeId
        attributes: [employeeId, mail]
  dir:
    type: ldap
    url: ldap://127.0.0.1:1
    bind_dn: cn=admin,dc=example,dc=com
    password_file: dir.secret
    base: dc=example,dc=com
    objects:
      user:
        filter: (objectClass=person)
        attributes: [uid, mail]
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        flow: { employeeId: employeeId, mail: mail }
    to:
      - connector: dir
        object: user
        flow:
          dn: '"uid=" .. employeeId .. ",dc=example,dc=com"'
          uid: employeeId
          mail: mail
"""
    path = write_file(workdir / "idsync.yaml", text)
    r = run_idsync("check", config=path, cwd=str(workdir))
    assert r.code == 4, r
    assert "connector hr (csv)" in r.out and "connector dir (ldap)" in r.out
    block = r.out.split("connector dir (ldap)")[1]
    assert "unreachable:" in block and "127.0.0.1:1" in block
    assert "s3cr3t" not in r.out + r.err
    r = run_idsync("check", "--json", config=path, cwd=str(workdir))
    assert r.code == 4
    doc = r.json()
    conns = {c["name"]: c for c in doc["connectors"]}
    assert conns["hr"]["ok"] is True and conns["dir"]["ok"] is False
    assert conns["dir"]["error"]["code"] == "unreachable"
    assert doc["store"]["ok"] is True and doc["ok"] is False
    r = run_idsync("config", "dump", config=path, cwd=str(workdir))
    assert r.code == 0, r
    assert "s3cr3t" not in r.out and "***" in r.out


# ---- a CSV -> CSV cycle through the read-only commands -------------------------


def runs_by_id(idsync):
    r = idsync("history", "--json", "--limit", "0")
    assert r.code == 0, r
    return {run["id"]: run for run in r.json()["runs"]}


def test_csv_cycle_and_the_commands_that_look_at_it(csv_env, idsync):
    r = idsync("check")
    assert r.code == 0, r
    assert "connector hr (csv)" in r.out and "connector target (csv)" in r.out

    # a dry run reports every add and writes nothing
    r = idsync("cycle", "--dry-run", "--json")
    assert r.code == 0, r
    doc = r.json()
    assert doc["run"]["dry_run"] is True and doc["run"]["status"] == "success"
    adds = [p for p in doc["pending"] if p["connector"] == "target"]
    assert sorted(op["op"] for op in adds) == ["add"] * 3
    assert not os.path.exists(csv_env / "out/users.csv")
    r = idsync("cycle", "--dry-run")
    assert r.code == 0, r
    assert "add user" in r.out and "mail: user1@example.com" in r.out
    assert "target" in r.out.split("CONNECTOR")[-1]  # the totals table

    # the real cycle
    r = idsync("cycle", "--full")
    assert r.code == 0, r
    assert r.out.startswith("cycle: success in ")
    rows = read_csv(csv_env / "out/users.csv", "id")
    assert set(rows) == {"E0001", "E0002", "E0003"}
    assert rows["E0002"]["displayName"] == "Given2 Family2"

    runs = runs_by_id(idsync)
    cycle = max((r for r in runs.values() if r["step"] == "cycle" and not r["dry_run"]),
                key=lambda r: r["id"])
    assert cycle["status"] == "success" and cycle["parent"] is None
    steps = [r for r in runs.values() if r["parent"] == cycle["id"]]
    names = [(s["step"], s["connector"]) for s in sorted(steps, key=lambda s: s["id"])]
    assert names[0] == ("full-import", "hr")
    assert ("export", "target") in names
    export = [s for s in steps if s["step"] == "export"][0]
    assert export["counters"]["export-add"] == 3
    sync = [s for s in steps if s["step"].endswith("sync")][0]
    assert sync["counters"]["projected"] == 3 and sync["counters"]["provisioned"] == 3

    r = idsync("history", str(cycle["id"]), "--json")
    assert r.code == 0, r
    one = r.json()
    assert one["id"] == cycle["id"] and one["error_count"] == 0
    assert [c["id"] for c in one["children"]] == sorted(s["id"] for s in steps)
    r = idsync("history")
    assert r.code == 0 and "RUN" in r.out and "full-import" in r.out

    # show cs: the HR object, joined to its MV object
    r = idsync("show", "cs", "hr", "E0002", "--json")
    assert r.code == 0, r
    cs = r.json()
    assert cs["anchor"] == "E0002" and cs["connector"] == "hr" and cs["type"] == "person"
    assert cs["attributes"]["mail"] == ["user2@example.com"]
    assert cs["import_state"] == "none" and cs["mv_id"] and cs["mv_type"] == "person"

    # show mv --where: the same MV object, its lineage and both links
    r = idsync("show", "mv", "--where", "employeeId=E0002", "--json")
    assert r.code == 0, r
    found = r.json()
    assert len(found) == 1
    mv = found[0]
    assert mv["id"] == cs["mv_id"] and mv["type"] == "person"
    assert mv["attributes"]["displayName"] == ["Given2 Family2"]
    assert mv["lineage"]["mail"] == {"from": 0, "connector": "hr", "object": "person"}
    links = {l["connector"]: l for l in mv["links"]}
    assert links["hr"]["cs_id"] == cs["id"]
    assert links["target"]["anchor"] == "E0002"
    r = idsync("show", "mv", str(mv["id"]), "--json")
    assert r.code == 0 and r.json() == mv
    r = idsync("show", "mv", str(mv["id"]))
    assert r.code == 0
    assert "metaverse object %d (person)" % mv["id"] in r.out and "hr/person" in r.out
    r = idsync("show", "cs", "target", "E0002", "--json")
    assert r.code == 0 and r.json()["mv_id"] == mv["id"]

    # not found: exit 1 with a message
    r = idsync("show", "cs", "hr", "E9999")
    assert r.code == 1 and 'idsync: no object with anchor or DN "E9999"' in r.err
    r = idsync("show", "mv", "--where", "employeeId=E9999")
    assert r.code == 1 and "no metaverse object has employeeId" in r.err
    r = idsync("history", "99999")
    assert r.code == 1 and "no run 99999" in r.err

    # no errors so far
    r = idsync("errors", "--json")
    assert r.code == 0, r
    assert r.json()["errors"] == []

    # a change: pending shows exactly it, export --dry-run too, nothing is written
    write_csv(csv_env / "src/people.csv", HEADER,
              [person(1), person(2, title="Manager"), person(3)])
    assert idsync("import", "hr").code == 0
    assert idsync("sync").code == 0
    r = idsync("pending", "target", "--json")
    assert r.code == 0, r
    pend = r.json()
    assert len(pend) == 1
    p = pend[0]
    assert p["op"] == "modify" and p["anchor"] == "E0002" and p["connector"] == "target"
    ch = {c["attr"].lower(): c for c in p["changes"]}
    assert ch["title"]["old"] == ["Engineer"] and ch["title"]["new"] == ["Manager"]
    r = idsync("pending", "target")
    assert r.code == 0
    assert "modify user E0002" in r.out and "title: Engineer -> Manager" in r.out
    r = idsync("export", "target", "--dry-run", "--json")
    assert r.code == 0, r
    assert [x["anchor"] for x in r.json()["pending"]] == ["E0002"]
    assert read_csv(csv_env / "out/users.csv", "id")["E0002"]["title"] == "Engineer"

    # preview of the changed object agrees with show cs
    r = idsync("preview", "hr", "E0002", "--json")
    assert r.code == 0, r
    pv = r.json()
    assert pv["cs_id"] == cs["id"] and pv["joined_to"] == mv["id"]
    r = idsync("preview", "hr", "E0002")
    assert r.code == 0 and "preview of hr E0002" in r.out

    r = idsync("export", "target")
    assert r.code == 0, r
    assert read_csv(csv_env / "out/users.csv", "id")["E0002"]["title"] == "Manager"
    r = idsync("pending", "target", "--json")
    assert r.code == 0 and r.json() == []


def test_object_errors_exit_1_and_errors_lists_them(csv_env, idsync):
    text = open(csv_env / "src/people.csv", encoding="utf-8").read()
    write_file(csv_env / "src/people.csv", text + 'E0100,"Broken,Row,user100@example.com,X\r\n')
    r = idsync("cycle", "--full")
    assert r.code == 1, r
    assert "errors (" in r.out and "see `idsync errors " in r.out
    runs = runs_by_id(idsync)
    cycle = max((x for x in runs.values() if x["step"] == "cycle"), key=lambda x: x["id"])
    assert cycle["status"] == "completed-with-errors"

    r = idsync("errors", str(cycle["id"]), "--json")
    assert r.code == 0, r
    doc = r.json()
    assert doc["run"] == cycle["id"] and doc["total"] >= 1
    e = doc["errors"][0]
    assert e["connector"] == "hr" and "people.csv" in e["message"]
    assert runs[e["run"]]["parent"] == cycle["id"]  # recorded on the import step
    assert runs[e["run"]]["counters"]["errors"] >= 1
    r = idsync("errors")
    assert r.code == 0 and "MESSAGE" in r.out and "people.csv" in r.out
    r = idsync("history", str(cycle["id"]), "--json")
    assert r.json()["error_count"] == doc["total"]
    # the good rows went through
    assert set(read_csv(csv_env / "out/users.csv", "id")) == {"E0001", "E0002", "E0003"}


def test_config_dump_and_docs(csv_env, idsync):
    r = idsync("config", "dump")
    assert r.code == 0, r
    assert "max_deletes: 500" in r.out and "hr:" in r.out
    r = idsync("config", "dump", "--json")
    assert r.code == 0
    assert "connectors" in json.loads(r.out)
    r = run_idsync("config", "docs", cwd="/")  # needs no configuration
    assert r.code == 0 and "max_deletes" in r.out


def test_reconnect_and_serve_answer_help(csv_env, idsync):
    r = idsync("reconnect", "--help")
    assert r.code == 0, r
    assert "--apply FILE" in r.out and "--by ATTR" in r.out
    r = idsync("serve", "--help")
    assert r.code == 0, r
    r = idsync("reconnect")  # nothing to match on: a usage error naming --by
    assert r.code == 3 and "--by" in r.err, r


LDIF_CONFIG = """
store: sqlite:idsync.db
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
    path: out/directory.ldif
    objects:
      user:
        attributes: [objectClass, uid, cn, sn, mail, title]
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
          sn: sn
          cn: 'givenName .. " " .. sn'
          mail: mail
          title: title
    to:
      - connector: dir
        object: user
        provision: true
        deprovision: delete
        flow:
          dn: '"uid=" .. lower(employeeId) .. ",ou=People,dc=example,dc=com"'
          objectClass: '{ "inetOrgPerson" }'
          uid: lower(employeeId)
          cn: cn
          sn: sn
          mail: mail
          title: title
safety:
  max_deletes: 1
  max_delete_percent: 0
"""


def test_deletion_threshold_exits_2_until_allowed(workdir, idsync):
    write_yaml(workdir / "idsync.yaml", LDIF_CONFIG)
    write_csv(workdir / "src/people.csv", HEADER, [person(i) for i in range(1, 6)])
    os.makedirs(workdir / "out")
    r = idsync("cycle", "--full")
    assert r.code == 0, r
    ldif = open(workdir / "out/directory.ldif", encoding="utf-8").read()
    assert ldif.count("changetype: add") == 5

    write_csv(workdir / "src/people.csv", HEADER, [person(i) for i in range(1, 4)])
    r = idsync("cycle")
    assert r.code == 2, r
    assert "stopped-threshold" in r.out
    assert "--allow-deletes" in r.out  # the run message says how to go on
    assert "idsync: " in r.err
    r = idsync("pending", "dir", "--json")
    assert r.code == 0, r
    assert sorted(p["op"] for p in r.json()) == ["delete", "delete"]
    r = idsync("pending", "dir")
    assert "delete user uid=e0004,ou=People,dc=example,dc=com" in r.out
    assert "dir          0       0       2      2" in r.out

    r = idsync("export", "dir", "--allow-deletes", "1", "--json")
    assert r.code == 2, r
    doc = r.json()
    assert doc["run"]["status"] == "stopped-threshold" and doc["error"]["code"] == "threshold"

    r = idsync("export", "dir", "--allow-deletes", "2")
    assert r.code == 0, r
    assert "export-delete 2" in r.out
    ldif = open(workdir / "out/directory.ldif", encoding="utf-8").read()
    assert ldif.count("changetype: delete") == 2
    r = idsync("pending", "dir", "--json")
    assert r.code == 0 and r.json() == []

    # history agrees with what happened, newest first
    runs = idsync("history", "--json").json()["runs"]
    assert runs[0]["step"] == "export" and runs[0]["counters"]["export-delete"] == 2
    assert runs[1]["status"] == "stopped-threshold"
