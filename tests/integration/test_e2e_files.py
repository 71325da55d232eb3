"""End-to-end cycles with files as the connected systems (issue 2).

CSV -> CSV, CSV -> LDIF and LDIF -> CSV through the real `idsync` binary:
add, update, rename, delete, group membership, join by anchor and by mail,
ambiguous join, projection, the three deprovision modes, the deletion
threshold, the import guard, dry run, malformed input and kill-and-rerun.
What is asserted is what an administrator would check: the target files,
exit codes, and what `history` / `errors` say.
"""
import base64
import csv
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
IDSYNC = os.environ.get("IDSYNC", os.path.join(TOP, "build-test", "idsync"))


class Env:
    """A work folder with a configuration, source files and a target."""

    def __init__(self, path):
        self.path = str(path)

    def write(self, name, text):
        p = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return p

    def read(self, name):
        with open(os.path.join(self.path, name), encoding="utf-8", newline="") as f:
            return f.read()

    def exists(self, name):
        return os.path.exists(os.path.join(self.path, name))

    def run(self, *args, env=None, expect=None, file_limit=None):
        e = dict(os.environ)
        e.pop("IDSYNC_FAULT", None)
        if env:
            e.update(env)

        def full_disk():
            # no file may grow past file_limit bytes: writes beyond fail
            # (EFBIG) as on a full disk, instead of raising SIGXFSZ
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

        p = subprocess.run([IDSYNC, "-c", os.path.join(self.path, "idsync.yaml"), *args],
                           cwd=self.path, env=e, capture_output=True, text=True, timeout=600,
                           preexec_fn=full_disk if file_limit else None)
        if expect is not None:
            assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p

    def json(self, *args, expect=0):
        p = self.run(*args, "--json", expect=expect)
        return json.loads(p.stdout)

    def rows(self, name, key):
        """Rows of a CSV file as {key: {column: value}}."""
        text = self.read(name)
        out = {}
        for r in csv.DictReader(io.StringIO(text)):
            assert r[key] not in out, "duplicate row %s in %s" % (r[key], name)
            out[r[key]] = r
        return out


def people_csv(people):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["employeeId", "givenName", "sn", "mail", "title"])
    for p in people:
        w.writerow([p["id"], p["given"], p["sn"], p["mail"], p.get("title", "")])
    return buf.getvalue()


def groups_csv(groups):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["name", "members"])
    for name, members in groups.items():
        w.writerow([name, ";".join(members)])
    return buf.getvalue()


def person(i, **kw):
    p = {"id": "E%04d" % i, "given": "Given%d" % i, "sn": "Family%d" % i,
         "mail": "user%d@example.com" % i, "title": "Engineer"}
    p.update(kw)
    return p


# the HR source of the CSV -> CSV and CSV -> LDIF group tests (a format string)
HR_SOURCE = """
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
      team:
        path: src/groups.csv
        key: name
        attributes: [name, members]
        references: {{ members: [person] }}
"""

CSV_TO_CSV = HR_SOURCE + """  target:
    type: csv
    settle: 0
    objects:
      user:
        path: out/users.csv
        key: id
        attributes: [id, externalId, displayName, mail, title, status]
      group:
        path: out/groups.csv
        key: name
        attributes: [name, member]
        references: {{ member: [user] }}
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
        deprovision: {deprovision}{disable}
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
  team:
    from:
      - connector: hr
        object: team
        project: true
        join: [ {{ name: name }} ]
        flow: {{ name: name, members: members }}
    to:
      - connector: target
        object: group
        provision: true
        deprovision: delete
        flow: {{ name: name, member: members }}
safety:
  max_deletes: {max_deletes}
  max_delete_percent: 0
  import_max_delete_percent: 50
"""


def csv_env(tmp_path, people, groups, deprovision="delete", max_deletes=500):
    env = Env(tmp_path)
    disable = ""
    if deprovision == "disable":
        disable = "\n        disable_attribute: status\n        disable_value: disabled"
    env.write("idsync.yaml", CSV_TO_CSV.format(deprovision=deprovision, disable=disable,
                                               max_deletes=max_deletes))
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)
    return env


def expect_users(env, people):
    rows = env.rows("out/users.csv", "id")
    assert set(rows) == {p["id"] for p in people}
    for p in people:
        r = rows[p["id"]]
        assert r["displayName"] == "%s %s" % (p["given"], p["sn"])
        assert r["mail"] == p["mail"]
        assert r["title"] == p.get("title", "")
    return rows


def expect_groups(env, groups):
    rows = env.rows("out/groups.csv", "name")
    assert set(rows) == set(groups)
    for name, members in groups.items():
        got = set(filter(None, rows[name]["member"].split(";")))
        assert got == set(members), name


def last_runs(env, n=20):
    data = env.json("history", "--limit", str(n))
    runs = data["runs"] if isinstance(data, dict) else data
    return runs


def counter(run, name):
    c = run.get("counters", run)
    return int(c.get(name, 0))


def exports_of_last_cycle(env):
    """Sum of export counters over the export runs of the newest cycle."""
    runs = last_runs(env, 20)
    cycle = next(r for r in runs if r["step"] == "cycle")
    total = 0
    for r in runs:
        if r.get("parent") == cycle["id"] and r["step"] == "export":
            for k in ("export-add", "export-update", "export-rename", "export-delete"):
                total += counter(r, k)
    return total


def test_csv_to_csv_full_then_every_kind_of_change(tmp_path):
    people = [person(i) for i in range(1, 21)]
    groups = {"red": ["E0001", "E0002", "E0003"], "blue": ["E0004"]}
    env = csv_env(tmp_path, people, groups)

    env.run("cycle", "--full", expect=0)
    expect_users(env, people)
    expect_groups(env, groups)

    # update, rename (mail and name change), delete, add, membership changes
    people[0]["title"] = "Director"
    people[1].update(sn="Renamed", mail="renamed2@example.com")
    gone = people.pop(2)
    people.append(person(99, title="Intern"))
    groups = {"red": ["E0001", "E0002", "E0099"], "blue": ["E0004", "E0005"]}
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))
    env.run("cycle", expect=0)
    rows = expect_users(env, people)
    assert gone["id"] not in rows
    expect_groups(env, groups)

    # a quiet cycle exports nothing
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_join_by_mail_adopts_existing_target_row(tmp_path):
    people = [person(i) for i in range(1, 6)]
    env = csv_env(tmp_path, people, {"red": ["E0001"]})
    # the target already holds person 2 (no anchor carrier yet): adopted by mail
    env.write("out/users.csv",
              "id,externalId,displayName,mail,title,status\r\n"
              "E0002,,Old Name,user2@example.com,Old,\r\n")
    env.run("cycle", "--full", expect=0)
    rows = expect_users(env, people)
    assert rows["E0002"]["externalId"] == "E0002"


def errors_of(env):
    errs = env.json("errors")
    return errs["errors"] if isinstance(errs, dict) else errs


def test_ambiguous_join_is_an_error_and_nothing_is_created(tmp_path):
    people = [person(1), person(2)]
    env = csv_env(tmp_path, people, {})
    env.write("out/users.csv",
              "id,externalId,displayName,mail,title,status\r\n"
              "X1,,Twin One,user2@example.com,,\r\n"
              "X2,,Twin Two,user2@example.com,,\r\n")
    p = env.run("cycle", "--full")
    assert p.returncode == 1, p.stderr
    amb = [e for e in errors_of(env) if e["code"] == "ambiguous-join"]
    assert amb
    rows = env.rows("out/users.csv", "id")
    # E0002 was neither created nor joined; the twins are untouched
    assert set(rows) == {"E0001", "X1", "X2"}
    assert rows["X1"]["displayName"] == "Twin One" and rows["X1"]["externalId"] == ""


def test_soft_match_refused_when_anchor_carrier_differs(tmp_path):
    people = [person(1), person(2)]
    env = csv_env(tmp_path, people, {})
    env.write("out/users.csv",
              "id,externalId,displayName,mail,title,status\r\n"
              "OLD2,S-OLD-2,Old Two,user2@example.com,,\r\n")
    p = env.run("cycle", "--full")
    assert p.returncode == 1, p.stderr
    mism = [e for e in errors_of(env) if e["code"] == "anchor-mismatch"]
    assert mism and "S-OLD-2" in mism[0]["message"] and "E0002" in mism[0]["message"]
    rows = env.rows("out/users.csv", "id")
    assert set(rows) == {"E0001", "OLD2"}  # no duplicate created for person 2
    assert rows["OLD2"]["externalId"] == "S-OLD-2"


@pytest.mark.parametrize("mode", ["delete", "disable", "disconnect"])
def test_deprovision_modes(tmp_path, mode):
    people = [person(i) for i in range(1, 11)]
    env = csv_env(tmp_path, people, {}, deprovision=mode)
    env.run("cycle", "--full", expect=0)
    env.write("src/people.csv", people_csv(people[1:]))
    env.run("cycle", expect=0)
    rows = env.rows("out/users.csv", "id")
    if mode == "delete":
        assert "E0001" not in rows
    elif mode == "disable":
        assert rows["E0001"]["status"] == "disabled"
    else:
        assert rows["E0001"]["status"] == "" and rows["E0001"]["mail"] == "user1@example.com"
    assert len(rows) == (9 if mode == "delete" else 10)

    # rehired: the account is back, enabled (before: a disabled account
    # was joined again and stayed disabled)
    people[0]["title"] = "Returner"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    rows = env.rows("out/users.csv", "id")
    assert rows["E0001"]["status"] == "" and rows["E0001"]["title"] == "Returner", rows["E0001"]
    assert len(rows) == 10
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_deletion_threshold_stops_export_until_allowed(tmp_path):
    people = [person(i) for i in range(1, 41)]
    env = csv_env(tmp_path, people, {}, max_deletes=5)
    env.run("cycle", "--full", expect=0)
    before = env.read("out/users.csv")
    env.write("src/people.csv", people_csv(people[:30]))  # 10 deletes > 5
    p = env.run("cycle")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "--allow-deletes" in p.stdout + p.stderr
    assert env.read("out/users.csv") == before  # nothing exported at all
    env.run("export", "target", "--allow-deletes", "10", expect=0)
    assert len(env.rows("out/users.csv", "id")) == 30


def test_deletion_threshold_counts_disables(tmp_path):
    """Deprovisioning by disabling locks people out as surely as deleting
    them: ten leavers over a threshold of five stop the export the same way
    (a scope filter gone wrong must not disable half the company)."""
    people = [person(i) for i in range(1, 41)]
    env = csv_env(tmp_path, people, {}, deprovision="disable", max_deletes=5)
    env.run("cycle", "--full", expect=0)
    before = env.read("out/users.csv")
    env.write("src/people.csv", people_csv(people[:30]))
    p = env.run("cycle")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "would disable 10 objects" in p.stdout + p.stderr, (p.stdout, p.stderr)
    assert "--allow-deletes 10" in p.stdout + p.stderr
    assert env.read("out/users.csv") == before  # nothing exported at all
    export = next(r for r in last_runs(env) if r["step"] == "export")
    assert export["status"] == "stopped-threshold", export
    env.run("export", "target", "--allow-deletes", "10", expect=0)
    rows = env.rows("out/users.csv", "id")
    assert len(rows) == 40
    assert sorted(i for i, r in rows.items() if r["status"] == "disabled") == \
        ["E%04d" % i for i in range(31, 41)]


def test_import_guard_stages_nothing_on_empty_source(tmp_path):
    people = [person(i) for i in range(1, 21)]
    env = csv_env(tmp_path, people, {})
    env.run("cycle", "--full", expect=0)
    env.write("src/people.csv", people_csv([]))
    p = env.run("import", "hr", "--full")
    assert p.returncode == 2, (p.stdout, p.stderr)
    # nothing staged: a sync and export change nothing
    env.run("sync", expect=0)
    env.run("export", "target", expect=0)
    assert len(env.rows("out/users.csv", "id")) == 20
    shown = env.json("show", "cs", "hr", "E0001")
    assert shown  # still in the connector space


def test_csv_delta_reads_only_changed_rows_and_guard_holds(tmp_path):
    people = [person(i) for i in range(1, 21)]
    env = csv_env(tmp_path, people, {})
    env.run("cycle", "--full", expect=0)
    people[0]["title"] = "Director"
    gone = people.pop(5)
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    runs = last_runs(env, 20)
    imp = next(r for r in runs if r["step"] == "delta-import" and r.get("connector") == "hr")
    # one changed row and one deletion are read, not the 19 others
    assert counter(imp, "read") == 2, imp
    assert counter(imp, "staged-update") == 1 and counter(imp, "staged-delete") == 1, imp
    sync = next(r for r in runs if r["step"] == "delta-sync")
    # the title reaches the metaverse and its target object; the leaver is
    # deprovisioned, not updated
    assert counter(sync, "flowed") == 1 and counter(sync, "flowed-out") == 1, sync
    assert counter(sync, "deprovisioned") == 1, sync
    rows = expect_users(env, people)
    assert gone["id"] not in rows
    # an emptied file is a mass deletion for the delta import too: the
    # import guard stops it and nothing is staged
    env.write("src/people.csv", people_csv([]))
    p = env.run("cycle")
    assert p.returncode == 2, (p.stdout, p.stderr)
    runs = last_runs(env, 20)
    imp = next(r for r in runs if r.get("connector") == "hr" and "import" in r["step"])
    assert imp["status"] == "stopped-threshold", imp
    assert len(env.rows("out/users.csv", "id")) == len(people)
    assert env.json("show", "cs", "hr", people[0]["id"])


def test_dry_run_writes_nothing_and_reports_every_change(tmp_path):
    people = [person(i) for i in range(1, 6)]
    env = csv_env(tmp_path, people, {"red": ["E0001", "E0002"]})
    p = env.run("cycle", "--dry-run", "--json", expect=0)
    report = json.loads(p.stdout)
    text = json.dumps(report)
    for i in range(1, 6):
        assert "E%04d" % i in text
    assert not env.exists("out/users.csv")
    # the store was left as before: the real cycle does all the work
    env.run("cycle", expect=0)
    expect_users(env, people)
    expect_groups(env, {"red": ["E0001", "E0002"]})


def test_malformed_csv_row_is_reported_and_others_sync(tmp_path):
    people = [person(i) for i in range(1, 6)]
    env = csv_env(tmp_path, people, {})
    text = people_csv(people) + 'E0100,"Broken,Row,user100@example.com,X\r\n'
    env.write("src/people.csv", text)
    p = env.run("cycle", "--full")
    assert p.returncode == 1, (p.stdout, p.stderr)
    msgs = " ".join(e["message"] for e in errors_of(env))
    assert "people.csv:7" in msgs or "people.csv:" in msgs, msgs
    expect_users(env, people)


CSV_TO_LDIF = """
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
"""


def ldif_records(text):
    recs = []
    for block in re.split(r"\n\n+", text.replace("\r\n", "\n")):
        lines = [l for l in block.split("\n") if l and not l.startswith("#")]
        # unfold
        out = []
        for l in lines:
            if l.startswith(" ") and out:
                out[-1] += l[1:]
            else:
                out.append(l)
        if out and out[0].startswith("dn:"):
            recs.append(out)
    return recs


def test_csv_to_ldif_change_records(tmp_path):
    people = [person(i) for i in range(1, 11)]
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_LDIF)
    env.write("src/people.csv", people_csv(people))
    os.makedirs(os.path.join(env.path, "out"))
    env.run("cycle", "--full", expect=0)
    recs = ldif_records(env.read("out/changes.ldif"))
    adds = [r for r in recs if "changetype: add" in r]
    assert len(adds) == 10
    assert any("mail: user3@example.com" in r for r in adds)

    people[0]["title"] = "Boss"
    people[1]["given"] = "Renamed"
    del people[2]
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    recs = ldif_records(env.read("out/changes.ldif"))[10:]
    kinds = sorted(next(l for l in r if l.startswith("changetype:")) for r in recs)
    assert kinds == ["changetype: delete", "changetype: modify", "changetype: modify"], recs
    mod = next(r for r in recs if r[0] == "dn: uid=e0001,ou=People,dc=example,dc=com")
    assert "replace: title" in mod and "title: Boss" in mod


CSV_TO_LDIF_NAMED = HR_SOURCE + """  dir:
    type: ldif
    settle: 0
    path: out/changes.ldif{anchor}
    objects:
      user:
        object_class: inetOrgPerson
        attributes: [objectClass, uid, cn, sn, mail]
      group:
        object_class: groupOfNames
        attributes: [objectClass, cn, member]
        references: {{ member: [user] }}
metaverse:
  person:
    from:
      - {{ connector: hr, object: person, project: true, join: [ {{ employeeId: employeeId }} ],
          flow: {{ employeeId: employeeId, givenName: givenName, sn: sn, mail: mail }} }}
    to:
      - connector: dir
        object: user
        provision: true
        deprovision: delete
        flow:
          dn: '"cn=" .. dn_escape(givenName .. " " .. sn) .. ",ou=People,dc=example,dc=com"'
          objectClass: '{{ "inetOrgPerson" }}'
          uid: lower(employeeId)
          cn: 'givenName .. " " .. sn'
          sn: sn
          mail: mail
  team:
    from:
      - {{ connector: hr, object: team, project: true, join: [ {{ name: name }} ],
          flow: {{ name: name, members: members }} }}
    to:
      - {{ connector: dir, object: group, provision: true, deprovision: delete,
          flow: {{ dn: '"cn=" .. dn_escape(name) .. ",ou=Groups,dc=example,dc=com"',
                  objectClass: '{{ "groupOfNames" }}', cn: name, member: members }} }}
"""


def ldif_replay(text):
    """The entries an LDAP server holds after ldapmodify of the change
    records (no referential integrity): {normalised DN: {attr: [values]}}."""
    entries = {}
    for rec in ldif_records(text):
        dn = rec[0][4:].strip()
        kind = next((l.split(":", 1)[1].strip() for l in rec if l.startswith("changetype:")),
                    "add")
        if kind == "add":
            e = {}
            for l in rec[1:]:
                if l.startswith("changetype:"):
                    continue
                a, v = l.split(":", 1)
                e.setdefault(a.lower(), []).append(v.strip())
            entries[dn.lower()] = e
        elif kind == "delete":
            del entries[dn.lower()]
        elif kind == "modrdn":
            newrdn = next(l.split(":", 1)[1].strip() for l in rec if l.startswith("newrdn:"))
            new = newrdn + "," + dn.split(",", 1)[1]
            entries[new.lower()] = entries.pop(dn.lower())
        elif kind == "modify":
            e = entries[dn.lower()]
            op = attr = None
            for l in rec[1:]:
                if l == "-":
                    op = attr = None
                    continue
                a, v = l.split(":", 1)
                v = v.strip()
                if a in ("add", "delete", "replace") and op is None:
                    op, attr = a, v.lower()
                    if op == "replace":
                        e[attr] = []
                    continue
                if a == "changetype":
                    continue
                if op == "delete":
                    assert v in e.get(attr, []), ("deleting a value that is not there", dn, v)
                    e[attr].remove(v)
                else:
                    e.setdefault(attr, []).append(v)
    return entries


@pytest.mark.parametrize("anchor", ["dn", "default"])
def test_rename_keeps_the_object_and_its_group_memberships(tmp_path, anchor):
    """A new display name renames the LDIF entry (modrdn), the object keeps
    its identity (the confirming import stages no add and no delete, nothing
    is created again), and the groups that name it by DN follow: replaying
    the file on a server without referential integrity leaves every group
    with the new DN only."""
    people = [person(i) for i in range(1, 601)]
    groups = {"red": ["E0001", "E0002"], "blue": ["E0002", "E0003"]}
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_LDIF_NAMED.format(
        anchor="\n    anchor: dn" if anchor == "dn" else ""))
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))
    os.makedirs(os.path.join(env.path, "out"))
    env.run("cycle", "--full", expect=0)
    old = "cn=given2 family2,ou=people,dc=example,dc=com"
    state = ldif_replay(env.read("out/changes.ldif"))
    assert old in [m.lower() for m in state["cn=red,ou=groups,dc=example,dc=com"]["member"]]

    # with every mail changed too, the groups are sent in a later export
    # batch than the rename: its member is the new DN all the same
    for p in people:
        p["mail"] = p["mail"].replace("@", ".new@")
    people[1]["given"] = "Renamed"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    runs = last_runs(env, 10)
    imports = [r for r in runs if r["step"].endswith("import") and r["connector"] == "dir"]
    assert counter(imports[0], "staged-add") == 0 and counter(imports[0], "staged-delete") == 0
    state = ldif_replay(env.read("out/changes.ldif"))
    new = "cn=renamed family2,ou=people,dc=example,dc=com"
    assert new in state and old not in state
    for g in ("red", "blue"):
        members = {m.lower() for m in state["cn=%s,ou=groups,dc=example,dc=com" % g]["member"]}
        assert new in members and old not in members, (g, members)

    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    env.run("sync", "--full", expect=0)
    p = env.run("export", "dir", expect=0)
    assert "nothing to do" in p.stdout, p.stdout


def named_ldif_env(tmp_path, people, anchor=""):
    """CSV -> LDIF named by cn, after a first full cycle; group red of E0001
    and E0002. anchor "dn": the LDIF connector anchored by DN."""
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_LDIF_NAMED.format(
        anchor="\n    anchor: dn" if anchor == "dn" else ""))
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv({"red": ["E0001", "E0002"]}))
    os.makedirs(os.path.join(env.path, "out"))
    env.run("cycle", "--full", expect=0)
    return env


def test_two_people_with_one_dn_do_not_share_or_block_the_directory(tmp_path):
    """Two people whose DN rule gives the same DN (two John Smiths): the
    first keeps the entry, the second is a dn-conflict error naming both
    sources, nothing is written for it (the file replays without a second
    add of the DN) and the other people and the group still go out; the same
    for a rename onto a taken DN. Once the first leaves, a full cycle creates
    the second. Before: both adds were written and every later export of the
    directory failed as a whole."""
    people = [person(i) for i in range(1, 6)]
    people.append(person(6, given="Given1", sn="Family1", mail="second@example.com"))
    groups = {"red": ["E0001", "E0002", "E0006"]}
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_LDIF_NAMED.format(anchor=""))
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))
    os.makedirs(os.path.join(env.path, "out"))
    taken = "cn=given1 family1,ou=people,dc=example,dc=com"

    env.run("cycle", "--full", expect=1)
    recs = ldif_records(env.read("out/changes.ldif"))
    adds = [r[0][4:].strip().lower() for r in recs if "changetype: add" in r]
    assert adds.count(taken) == 1 and len(adds) == 6, adds  # 5 people and the group
    state = ldif_replay(env.read("out/changes.ldif"))
    assert state[taken]["mail"] == ["user1@example.com"]
    assert {m.lower() for m in state["cn=red,ou=groups,dc=example,dc=com"]["member"]} == {
        taken, "cn=given2 family2,ou=people,dc=example,dc=com"}
    errs = [e for e in errors_of(env) if e["code"] == "dn-conflict"]
    assert len(errs) == 1, errors_of(env)
    msg = errs[0]["message"]
    assert "creating cn=Given1 Family1,ou=People,dc=example,dc=com" in msg, msg
    assert "(from hr E0001)" in msg and "(from hr E0006)" in msg, msg
    assert "own DN" in msg, msg

    # the directory is not stuck: the next cycles export what changes
    people[2]["mail"] = "three@example.com"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    assert ldif_replay(env.read("out/changes.ldif"))[
        "cn=given3 family3,ou=people,dc=example,dc=com"]["mail"] == ["three@example.com"]

    # a rename onto a taken DN changes nothing for that person
    n = len(ldif_records(env.read("out/changes.ldif")))
    people[3].update(given="Given5", sn="Family5", title="Lead")
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=1)
    assert len(ldif_records(env.read("out/changes.ldif"))) == n
    msg = [e for e in errors_of(env) if e["code"] == "dn-conflict"][0]["message"]
    assert msg.startswith("renaming cn=Given4 Family4,ou=People,dc=example,dc=com to "
                          "cn=Given5 Family5,ou=People,dc=example,dc=com"), msg
    assert "(from hr E0005)" in msg and "(from hr E0004)" in msg, msg

    # the first John Smith leaves: the delta sync that deletes his entry
    # creates the second's (the export writes the delete first)
    del people[0]
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=2)  # 1 of 6 is over the deletion threshold
    env.run("export", "dir", "--allow-deletes", "1", expect=0)
    recs = ldif_records(env.read("out/changes.ldif"))
    ours = [next(l for l in r if l.startswith("changetype:")) for r in recs
            if r[0][4:].strip().lower() == taken]
    assert ours[-2:] == ["changetype: delete", "changetype: add"], ours
    state = ldif_replay(env.read("out/changes.ldif"))
    assert state[taken]["mail"] == ["second@example.com"]
    env.run("cycle", expect=0)
    state = ldif_replay(env.read("out/changes.ldif"))
    assert taken in {m.lower() for m in state["cn=red,ou=groups,dc=example,dc=com"]["member"]}
    env.run("cycle", "--full", expect=1)  # person 4 still conflicts with person 5

    # a newcomer named like person 2 waits; person 2 is renamed, and the
    # delta cycle after the rename creates the newcomer at the freed DN
    second = "cn=given2 family2,ou=people,dc=example,dc=com"
    people.append(person(7, given="Given2", sn="Family2", mail="seven@example.com"))
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=1)
    assert ldif_replay(env.read("out/changes.ldif"))[second]["mail"] == ["user2@example.com"]
    next(p for p in people if p["id"] == "E0002")["sn"] = "Other"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    env.run("cycle", expect=0)
    state = ldif_replay(env.read("out/changes.ldif"))
    assert state[second]["mail"] == ["seven@example.com"], state.get(second)
    assert state["cn=given2 other,ou=people,dc=example,dc=com"]["mail"] == ["user2@example.com"]


def test_two_people_with_one_csv_key_name_the_person_refused(tmp_path):
    """A CSV target keyed by a column that a flow fills with the family
    name: two people of one family get the same key. The first row is
    written, the second create fails at each export with an error that names
    the person (the create has neither DN nor key of its own yet; before,
    the message read "add  failed") and the file keeps one row per key."""
    people = [person(i) for i in range(1, 6)]
    people[1]["sn"] = "Family1"
    env = csv_env(tmp_path, people, {"red": ["E0001", "E0003"]})
    flow = """          id: 'lower(split(displayName, " ")[2])'\n"""
    env.write("idsync.yaml", env.read("idsync.yaml").replace("          id: employeeId\n", flow))
    for _ in range(2):
        env.run("cycle", expect=1)
        rows = env.rows("out/users.csv", "id")
        assert sorted(rows) == ["family1", "family3", "family4", "family5"], rows
        assert rows["family1"]["externalId"] == "E0001"
        errs = errors_of(env)
        assert [e["code"] for e in errs] == ["export-failed"], errs
        msg = errs[0]["message"]
        assert "(from hr E0002)" in msg and '"family1"' in msg, msg
    assert set(env.rows("out/groups.csv", "name")["red"]["member"].split(";")) == {
        "family1", "family3"}

    people[1]["sn"] = "Family2"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    assert env.rows("out/users.csv", "id")["family2"]["externalId"] == "E0002"
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_initial_flow_sets_a_value_once(tmp_path):
    """initial_flow: the create carries the value; afterwards the target
    owns it (a value changed there stays, nothing is sent again) and a new
    row gets it too. A flow calling random_password() is refused."""
    people = [person(i) for i in range(1, 4)]
    env = csv_env(tmp_path, people, {"red": ["E0001"]})
    cfg = env.read("idsync.yaml").replace(
        "        anchor_carrier: externalId\n",
        "        anchor_carrier: externalId\n        initial_flow: { status: '\"new\"' }\n", 1)
    env.write("idsync.yaml", cfg)
    env.run("cycle", expect=0)
    rows = env.rows("out/users.csv", "id")
    assert {r["status"] for r in rows.values()} == {"new"}, rows

    # the target system activates one account: idsync leaves it so
    text = env.read("out/users.csv").replace(",Engineer,new", ",Engineer,active", 1)
    env.write("out/users.csv", text)
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    rows = env.rows("out/users.csv", "id")
    assert rows["E0001"]["status"] == "active" and rows["E0002"]["status"] == "new", rows
    people.append(person(4))
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    rows = env.rows("out/users.csv", "id")
    assert rows["E0004"]["status"] == "new" and rows["E0001"]["status"] == "active", rows

    # the same value drawn at random in an ordinary flow: refused at load
    plain = env.read("idsync.yaml").replace("        initial_flow: { status: '\"new\"' }\n", "")
    env.write("idsync.yaml", plain.replace(
        "          title: title\n", "          title: title\n          status: random_password()\n",
        1))
    p = env.run("check", expect=3)
    assert "random_password() gives another value at every sync" in p.stderr, p.stderr


@pytest.mark.parametrize("anchor", ["default", "dn"])
def test_leaver_and_joiner_of_one_name_in_one_cycle(tmp_path, anchor):
    """John Smith leaves and another John Smith joins in the same cycle: the
    DN is free once the leaver's entry is deleted, so the export writes the
    delete first and the create after it, and the file replays to the new
    person. Before: the create was written first, the store then took the
    leaver's object for the new one, the delete was never written, and the
    file added the DN twice (the leaver stayed in a replayed directory).
    Anchored by DN, the confirming import reads the leaver's delete before
    the joiner's create, under one anchor: it used to report the joiner as
    `exported-change-not-reimported` (a cycle completed with errors)."""
    people = [person(i) for i in range(1, 5)]
    env = named_ldif_env(tmp_path, people, anchor)
    dn = "cn=given1 family1,ou=people,dc=example,dc=com"

    people[0] = person(9, given="Given1", sn="Family1", mail="newcomer@example.com")
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv({"red": ["E0009", "E0002"]}))
    env.run("cycle", expect=2)  # 1 delete of 6 objects: over the deletion threshold
    env.run("export", "dir", "--allow-deletes", "1", expect=0)
    recs = ldif_records(env.read("out/changes.ldif"))
    last = [(r[0][4:].strip().lower(), next(l for l in r if l.startswith("changetype:")))
            for r in recs[-3:]]
    ours = [k for d, k in last if d == dn]
    assert ours == ["changetype: delete", "changetype: add"], last
    env.run("cycle", expect=0)
    confirm = next(r for r in last_runs(env, 6) if r["connector"] == "dir")
    assert counter(confirm, "confirmed") >= 1 and counter(confirm, "errors") == 0, confirm
    state = ldif_replay(env.read("out/changes.ldif"))
    assert state[dn]["mail"] == ["newcomer@example.com"]
    assert dn in {m.lower() for m in state["cn=red,ou=groups,dc=example,dc=com"]["member"]}
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def remove_store(env):
    """The store's database, log and state folder, as when it is lost."""
    for f in os.listdir(env.path):
        if f.startswith("idsync.db"):
            p = os.path.join(env.path, f)
            if os.path.isdir(p):
                shutil.rmtree(p)
            else:
                os.remove(p)


def test_entry_already_at_the_dn_is_joined_when_it_matches_and_reported_when_not(tmp_path):
    """A store started again beside a directory that idsync filled (the
    database lost, or a connector renamed): each entry at the DN a create
    would use holds the values of the create, so it is joined and nothing is
    written again (before: every person was added a second time to the LDIF
    file, whose next import then failed with "entry added twice"). An entry
    at that DN that is someone else (a directory filled by hand) is a
    dn-conflict the dry run already shows, naming the value that differs."""
    people = [person(i) for i in range(1, 6)]
    env = named_ldif_env(tmp_path, people)
    before = env.read("out/changes.ldif")

    remove_store(env)
    env.run("cycle", "--full", expect=0)
    assert env.read("out/changes.ldif") == before
    runs = last_runs(env, 10)
    sync = next(r for r in runs if r["step"] == "full-sync")
    assert counter(sync, "joined") == 6 and counter(sync, "provisioned") == 0, sync
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # someone else at a DN: a new hire named like an entry idsync did not
    # create (the first store's person 5, gone from HR and from this store)
    remove_store(env)
    people[4] = person(9, given="Given5", sn="Family5", mail="other@example.com")
    env.write("src/people.csv", people_csv(people))
    p = env.run("cycle", "--full", "--dry-run", expect=1)
    errs = [e for e in env.json("errors")["errors"] if e["code"] == "dn-conflict"]
    assert len(errs) == 1, p.stdout
    msg = errs[0]["message"]
    assert msg.startswith("creating cn=Given5 Family5,ou=People,dc=example,dc=com: an entry is "
                          "already at that DN in dir, joined to no metaverse object"), msg
    assert "its uid is e0005, not e0009" in msg, msg
    assert "(from hr E0009)" in msg, msg
    assert env.read("out/changes.ldif") == before


def test_renamed_target_connector_finds_its_entries_again(tmp_path):
    """The LDIF target renamed in the configuration (dir -> directory):
    `check` names the space left behind, and the first full cycle joins every
    entry idsync created by its DN and values instead of writing each person
    a second time."""
    people = [person(i) for i in range(1, 6)]
    env = named_ldif_env(tmp_path, people)
    before = env.read("out/changes.ldif")
    cfg = env.read("idsync.yaml")
    env.write("idsync.yaml", cfg.replace("  dir:\n", "  directory:\n").replace(
        "connector: dir,", "connector: directory,").replace("- connector: dir\n",
                                                            "- connector: directory\n"))
    assert "connector: dir\n" not in env.read("idsync.yaml")
    p = env.run("check", expect=0)
    assert ("note: 6 connector-space objects of connector dir, which the configuration no "
            "longer has (renamed or removed)") in p.stdout, p.stdout
    assert env.json("check")["store"]["unconfigured_spaces"] == [
        {"connector": "dir", "objects": 6}]
    env.run("cycle", "--full", expect=0)
    assert env.read("out/changes.ldif") == before
    sync = next(r for r in last_runs(env, 10) if r["step"] == "full-sync")
    assert counter(sync, "joined") == 6 and counter(sync, "provisioned") == 0, sync
    shown = env.run("show", "mv", "1", expect=0).stdout
    assert "dir (not configured)" in shown and "directory " in shown, shown


# An HR source and a legacy source feeding one target: legacy projects the
# people HR does not have, and flows mail with a lower precedence (HR's
# teams are read and not synced).
HR_AND_LEGACY = HR_SOURCE + """{legacy}
  target:
    type: csv
    settle: 0
    objects:
      user: {{ path: out/users.csv, key: id, attributes: [id, displayName, mail, title] }}
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ {{ employeeId: employeeId }} ]
        flow: {{ employeeId: employeeId, displayName: 'givenName .. " " .. sn', mail: mail, title: title }}
{legacy_from}
    to:
      - connector: target
        object: user
        provision: true
        deprovision: delete
        join: [ {{ id: employeeId }} ]
        flow: {{ id: employeeId, displayName: displayName, mail: mail, title: title }}
"""
LEGACY_CONNECTOR = """  legacy:
    type: csv
    settle: 0
    objects:
      person: { path: src/legacy.csv, key: employeeId, attributes: [employeeId, givenName, sn, mail, title] }"""
LEGACY_FROM = """      - connector: legacy
        object: person
        project: true
        join: [ { employeeId: employeeId } ]
        flow: { employeeId: employeeId, displayName: 'givenName .. " " .. sn', mail: mail, title: title }"""


def spaces(env):
    return {s["connector"]: s for s in env.json("space")["spaces"]}


def test_dropped_space_of_a_removed_source_is_recomputed_and_deprovisioned(tmp_path):
    """A source removed from the configuration: the full sync its rule change
    causes recomputes the people another source has, but the person only
    it projected stays in the target. `space drop` ends it as if the source had
    deleted its objects: the dry run lists the changes and keeps the store,
    the drop leaves the exports pending behind the deletion threshold."""
    env = Env(tmp_path)
    people = [person(i) for i in range(1, 4)]
    people[0]["mail"] = ""  # E0001: HR has no mail, legacy has one
    env.write("idsync.yaml", HR_AND_LEGACY.format(legacy=LEGACY_CONNECTOR,
                                                  legacy_from=LEGACY_FROM))
    env.write("src/people.csv", people_csv(people[:2]))  # E0003 only in legacy
    env.write("src/groups.csv", groups_csv({}))  # HR's teams: read, not synced here
    env.write("src/legacy.csv", people_csv([dict(p, title="Old title", mail="old-%s@example.com"
                                                  % p["id"]) for p in people]))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)
    env.run("cycle", expect=0)
    before = env.rows("out/users.csv", "id")
    assert sorted(before) == ["E0001", "E0002", "E0003"]
    assert before["E0001"]["mail"] == "old-E0001@example.com"

    # legacy removed from the configuration: the rules changed, so the
    # cycle syncs in full, and E0001 loses the mail only legacy gave; but
    # E0003, whom only legacy projected, stays in the target
    env.write("idsync.yaml", HR_AND_LEGACY.format(legacy="", legacy_from=""))
    env.run("cycle", expect=0)
    env.run("cycle", expect=0)
    kept = env.rows("out/users.csv", "id")
    assert sorted(kept) == ["E0001", "E0002", "E0003"], kept
    assert kept["E0001"]["mail"] == "" and kept["E0003"] == before["E0003"], kept
    s = spaces(env)
    assert s["legacy"] == {"connector": "legacy", "configured": False, "objects": 3,
                           "joined": 3, "pending_exports": 0}, s
    text = env.run("space", expect=0).stdout
    assert "idsync space drop NAME" in text, text
    assert "idsync space rename legacy NEW" in env.run("check", expect=0).stdout

    # refused: a configured connector, a space the store does not have
    p = env.run("space", "drop", "hr", expect=3)
    assert "connector hr is in the configuration" in p.stderr, p.stderr
    p = env.run("space", "drop", "nosuch", expect=3)
    assert "no connector space called nosuch (its spaces: hr, legacy, target)" in p.stderr

    # dry run: what would happen, nothing kept
    doc = env.json("space", "drop", "legacy", "--dry-run")
    c = doc["run"]["counters"]
    assert doc["run"]["dry_run"] and c["disconnected"] == 3 and c["mv-deleted"] == 1, c
    assert c["deprovisioned"] == 1 and c["flowed-out"] == 0, c
    assert [(x["op"], x["anchor"]) for x in doc["pending"]] == [("delete", "E0003")], doc
    assert spaces(env)["legacy"]["objects"] == 3
    assert env.run("pending", "target", expect=0).stdout.strip() == "No pending exports."

    env.run("space", "drop", "legacy", expect=0)
    s = spaces(env)
    assert "legacy" not in s and s["target"]["pending_exports"] == 1, s
    # the delete waits behind the deletion threshold (10 % of 3 objects)
    env.run("cycle", expect=2)
    assert env.rows("out/users.csv", "id")["E0003"]
    env.run("export", "target", "--allow-deletes", "1", expect=0)
    after = env.rows("out/users.csv", "id")
    assert sorted(after) == ["E0001", "E0002"], after
    assert after["E0001"] == kept["E0001"] and after["E0002"] == before["E0002"], after
    drops = [r for r in last_runs(env, 30) if r["step"] == "space-drop"]
    assert [(r["connector"], r["dry_run"]) for r in drops] == [("legacy", False),
                                                               ("legacy", True)], drops
    env.run("sync", "--full", expect=0)
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.rows("out/users.csv", "id") == after


# HR's people and teams into a CSV target. {more}: more connectors, or more
# object types of hr (by their indentation); {more_person}, {more_team}:
# more `from` items. The legacy connector below gives people and a team of
# its own (person E0003, team Legacy); the contractor type gives HR's
# contractors.
HR_TEAMS = HR_SOURCE + """{more}
  target:
    type: csv
    settle: 0
    objects:
      user: {{ path: out/users.csv, key: id, attributes: [id, displayName] }}
      group: {{ path: out/groups.csv, key: name, attributes: [name, member], references: {{ member: [user] }} }}
metaverse:
  person:
    from:
      - {{ connector: hr, object: person, project: true, join: [ {{ employeeId: employeeId }} ],
          flow: {{ employeeId: employeeId, displayName: 'givenName .. " " .. sn' }} }}
{more_person}
    to:
      - {{ connector: target, object: user, provision: true, deprovision: delete,
          flow: {{ id: employeeId, displayName: displayName }} }}
  team:
    from:
      - {{ connector: hr, object: team, project: true, join: [ {{ name: name }} ], flow: {{ name: name, members: members }} }}
{more_team}
    to:
      - {{ connector: target, object: group, provision: true, deprovision: delete,
          flow: {{ name: name, member: members }} }}
safety: {{ max_delete_percent: 0 }}
"""
LEGACY_TEAMS_CONNECTOR = """  legacy:
    type: csv
    settle: 0
    objects:
      person: { path: src/legacy.csv, key: employeeId, attributes: [employeeId, givenName, sn, mail, title] }
      team: { path: src/legacy-teams.csv, key: name, attributes: [name, members], references: { members: [person] } }"""
LEGACY_TEAMS_PERSON = """      - { connector: legacy, object: person, project: true, join: [ { employeeId: employeeId } ],
          flow: { employeeId: employeeId, displayName: 'givenName .. " " .. sn' } }"""
LEGACY_TEAMS_TEAM = """      - { connector: legacy, object: team, project: true, join: [ { name: name } ], flow: { name: name, members: members } }"""



def test_objects_only_a_removed_source_gave_stay_until_its_space_is_dropped(tmp_path):
    """With legacy out of the configuration, the full sync its rule change
    causes, and a member's deletion, recomputed team Legacy (legacy alone
    gave it) from no source at all: its name and members were cleared and
    the cleared row sent to the target (`the key column cannot be deleted`,
    at every cycle). Such an object now stays as it is until `space drop`
    removes it with its space."""
    env = Env(tmp_path)
    people = [person(i) for i in range(1, 4)]
    env.write("idsync.yaml", HR_TEAMS.format(
        more=LEGACY_TEAMS_CONNECTOR, more_person=LEGACY_TEAMS_PERSON,
        more_team=LEGACY_TEAMS_TEAM))
    env.write("src/people.csv", people_csv(people[:2]))
    env.write("src/groups.csv", groups_csv({"Eng": ["E0001", "E0002"]}))
    env.write("src/legacy.csv", people_csv(people[2:]))
    env.write("src/legacy-teams.csv", groups_csv({"Legacy": ["E0003"]}))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)
    env.run("cycle", expect=0)
    groups = env.read("out/groups.csv")
    assert "Legacy,E0003" in groups, groups

    env.write("idsync.yaml", HR_TEAMS.format(more="", more_person="", more_team=""))
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    env.write("src/people.csv", people_csv(people[1:2]))
    env.write("src/groups.csv", groups_csv({"Eng": ["E0002"]}))
    env.run("cycle", expect=0)
    assert env.rows("out/groups.csv", "name") == {
        "Eng": {"name": "Eng", "member": "E0002"},
        "Legacy": {"name": "Legacy", "member": "E0003"}}
    assert sorted(env.rows("out/users.csv", "id")) == ["E0002", "E0003"]

    env.run("space", "drop", "legacy", expect=0)
    env.run("cycle", expect=0)
    assert sorted(env.rows("out/groups.csv", "name")) == ["Eng"]
    assert sorted(env.rows("out/users.csv", "id")) == ["E0002"]


CONTRACTOR_TYPE = """      contractor: { path: src/contractors.csv, key: employeeId, attributes: [employeeId, givenName, sn, mail, title] }"""
CONTRACTOR_FROM = """      - { connector: hr, object: contractor, project: true, join: [ { employeeId: employeeId } ],
          flow: { employeeId: employeeId, displayName: 'givenName .. " " .. sn' } }"""



def test_object_type_taken_out_of_a_source_deprovisions_its_objects(tmp_path):
    """The contractor type taken out of the HR connector and out of the
    metaverse: the full import its scope change runs stages the contractors
    as deleted, and the sync used to drop them from the connector space
    without unlinking their metaverse objects, so the contractor stayed in
    the target for good. It is now deprovisioned as a deletion in HR is."""
    env = Env(tmp_path)
    people = [person(i) for i in range(1, 6)]
    env.write("idsync.yaml", HR_TEAMS.format(more=CONTRACTOR_TYPE, more_person=CONTRACTOR_FROM,
                                             more_team=""))
    env.write("src/people.csv", people_csv(people[:4]))
    env.write("src/groups.csv", groups_csv({"Eng": ["E0001"]}))
    env.write("src/contractors.csv", people_csv(people[4:]))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)
    env.run("cycle", expect=0)
    assert sorted(env.rows("out/users.csv", "id")) == ["E0001", "E0002", "E0003", "E0004",
                                                       "E0005"]
    env.write("idsync.yaml", HR_TEAMS.format(more="", more_person="", more_team=""))
    assert env.json("check")["store"]["full_steps"] == {"sync": True, "imports": ["hr"]}
    env.run("cycle", expect=0)
    sync = next(r for r in last_runs(env, 6) if r["step"].endswith("-sync"))
    assert counter(sync, "mv-deleted") == 1 and counter(sync, "deprovisioned") == 1, sync
    assert sorted(env.rows("out/users.csv", "id")) == ["E0001", "E0002", "E0003", "E0004"]
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def hr_renamed_workday(tmp_path):
    """A CSV -> CSV cycle, then connector hr renamed workday in the
    configuration: the env, the people and the users file written."""
    people = [person(i) for i in range(1, 6)]
    env = csv_env(tmp_path, people, {"Eng": ["E0001", "E0002"]})
    env.run("cycle", expect=0)
    cfg = env.read("idsync.yaml")
    env.write("idsync.yaml", cfg.replace("  hr:\n", "  workday:\n").replace(
        "connector: hr", "connector: workday"))
    return env, people, env.read("out/users.csv")


def test_renamed_source_connector_keeps_its_space(tmp_path):
    """hr renamed workday in the configuration: `space rename hr workday`
    gives it the space, so its first cycle reads nothing again and writes
    nothing, and the next change goes out as one update."""
    env, people, users = hr_renamed_workday(tmp_path)
    p = env.run("space", "rename", "workday", "hr", expect=3)
    assert "connector workday is still in the configuration" in p.stderr, p.stderr
    p = env.run("space", "rename", "hr", "nosuch", expect=3)
    assert "no connector called nosuch in the configuration" in p.stderr, p.stderr
    env.run("space", "rename", "hr", "workday", "--dry-run", expect=0)
    assert spaces(env)["hr"]["objects"] == 6

    env.run("space", "rename", "hr", "workday", expect=0)
    s = spaces(env)
    assert "hr" not in s and s["workday"]["objects"] == 6 and s["workday"]["joined"] == 6, s
    env.run("cycle", expect=0)
    runs = last_runs(env, 6)
    imp = next(r for r in runs if r["connector"] == "workday")
    assert imp["step"] == "delta-import" and counter(imp, "staged-add") == 0, imp
    # the rules name the connector: one full sync, which changes nothing
    sync = next(r for r in runs if r["step"].endswith("-sync"))
    assert counter(sync, "joined") == 0 and counter(sync, "projected") == 0, sync
    assert counter(sync, "flowed-out") == 0 and counter(sync, "provisioned") == 0, sync
    assert env.read("out/users.csv") == users
    people[1]["title"] = "Boss"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    exp = next(r for r in last_runs(env, 8) if r["step"] == "export")
    assert counter(exp, "export-update") == 1 and counter(exp, "export-add") == 0, exp
    assert env.rows("out/users.csv", "id")["E0002"]["title"] == "Boss"


def test_space_renamed_onto_a_connector_that_imported_nothing(tmp_path):
    """The renamed connector was imported once while its files were empty:
    its space exists and holds nothing, so the rename replaces it, and the
    next cycle writes nothing."""
    env, people, users = hr_renamed_workday(tmp_path)
    full = {n: env.read("src/" + n) for n in ("people.csv", "groups.csv")}
    env.write("src/people.csv", people_csv([]))
    env.write("src/groups.csv", groups_csv({}))
    env.run("import", "workday", expect=0)
    assert spaces(env)["workday"]["objects"] == 0
    for n, text in full.items():
        env.write("src/" + n, text)
    env.run("space", "rename", "hr", "workday", expect=0)
    s = spaces(env)
    assert "hr" not in s and s["workday"]["objects"] == 6 and s["workday"]["joined"] == 6, s
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.read("out/users.csv") == users


def test_space_renamed_too_late_is_dropped_instead(tmp_path):
    """The renamed connector already ran a cycle (its join rules linked every
    object again): renaming the old space onto it is refused, and dropping
    the old one changes nothing in the target."""
    env, people, users = hr_renamed_workday(tmp_path)
    env.run("cycle", expect=0)
    p = env.run("space", "rename", "hr", "workday", expect=3)
    assert ("connector workday already has a space of 6 objects" in p.stderr
            and "idsync space drop hr" in p.stderr), p.stderr
    doc = env.json("space", "drop", "hr")
    c = doc["run"]["counters"]
    assert c["disconnected"] == 6 and c["mv-deleted"] == 0 and c["flowed-out"] == 0, c
    assert env.run("pending", "target", expect=0).stdout.strip() == "No pending exports."
    env.run("cycle", expect=0)
    assert env.read("out/users.csv") == users
    assert sorted(spaces(env)) == ["target", "workday"]


def test_rule_edited_in_the_configuration_reaches_every_object(tmp_path):
    """A flow rule edited between two cycles: the next `cycle` syncs every
    object with it (a full sync that says why), its dry run lists every
    change first, and the cycle after is a delta again."""
    people = [person(i) for i in range(1, 5)]
    env = csv_env(tmp_path, people, {"Eng": ["E0001"]})
    env.run("cycle", expect=0)
    cfg = env.read("idsync.yaml")
    edited = cfg.replace("          title: title\n    to:", "          title: upper(title)\n    to:", 1)
    assert edited != cfg
    env.write("idsync.yaml", edited)
    assert env.json("check")["store"]["full_steps"] == {"sync": True, "imports": []}
    assert "the next sync runs in full over the 5 metaverse objects" in env.run(
        "check", expect=0).stdout
    doc = env.json("cycle", "--dry-run")
    assert sorted(x["anchor"] for x in doc["pending"]) == [p["id"] for p in people], doc
    assert all(x["op"] == "modify" for x in doc["pending"])
    assert {r["title"] for r in env.rows("out/users.csv", "id").values()} == {"Engineer"}
    env.run("cycle", expect=0)
    sync = next(r for r in last_runs(env, 6) if r["step"].endswith("-sync"))
    assert sync["step"] == "full-sync" and "rules" in sync["message"], sync
    assert {r["title"] for r in env.rows("out/users.csv", "id").values()} == {"ENGINEER"}
    env.run("cycle", expect=0)
    assert [r["step"] for r in last_runs(env, 4) if r["step"].endswith("-sync")] == ["delta-sync"]
    assert env.json("check")["store"]["full_steps"] == {"sync": False, "imports": []}


def test_attribute_added_to_a_source_is_read_from_every_object(tmp_path):
    """`title` added to the HR connector's attributes and to the flows, the
    file unchanged: the next cycle imports that connector in full (its
    scope changed), so every person gets a title, not only those whose row
    changes."""
    people = [person(i) for i in range(1, 5)]
    env = csv_env(tmp_path, people, {"Eng": ["E0001"]})
    full_cfg = env.read("idsync.yaml")
    narrow = full_cfg.replace("attributes: [employeeId, givenName, sn, mail, title]",
                              "attributes: [employeeId, givenName, sn, mail]", 1)
    narrow = narrow.replace("          title: title\n", "", 2)
    assert "title: title" not in narrow and narrow.count("title") == 1, narrow
    env.write("idsync.yaml", narrow)
    env.run("cycle", expect=0)
    assert {r["title"] for r in env.rows("out/users.csv", "id").values()} == {""}
    env.write("idsync.yaml", full_cfg)
    steps = env.json("check")["store"]["full_steps"]
    assert steps == {"sync": True, "imports": ["hr"]}, steps
    assert "the scope of connector hr (object types, filters, attributes) changed since its " \
        "last import: its next import reads it in full" in env.run("check", expect=0).stdout
    env.run("cycle", expect=0)
    runs = last_runs(env, 8)
    imp = next(r for r in runs if r["connector"] == "hr")
    assert imp["step"] == "full-import" and "scope of connector hr" in imp["message"], imp
    assert counter(imp, "staged-update") == 4, imp
    assert {r["title"] for r in env.rows("out/users.csv", "id").values()} == {"Engineer"}
    env.run("cycle", expect=0)
    imp = next(r for r in last_runs(env, 6) if r["connector"] == "hr")
    assert imp["step"] == "delta-import", imp


LDIF_TO_CSV = """
store: sqlite:idsync.db
connectors:
  dir:
    type: ldif
    settle: 0
    path: src/directory.ldif
    objects:
      user:
        object_class: inetOrgPerson
        attributes: [uid, employeeNumber, givenName, sn, mail, title]
      group:
        object_class: groupOfNames
        attributes: [cn, member]
        references: { member: [user] }
  target:
    type: csv
    settle: 0
    objects:
      user:
        path: out/users.csv
        key: id
        attributes: [id, displayName, mail, title]
      group:
        path: out/groups.csv
        key: name
        attributes: [name, member]
        references: { member: [user] }
metaverse:
  person:
    from:
      - connector: dir
        object: user
        project: true
        join: [ { employeeId: employeeNumber } ]
        flow: { employeeId: employeeNumber, displayName: 'givenName .. " " .. sn', mail: mail, title: title }
    to:
      - connector: target
        object: user
        provision: true
        deprovision: delete
        flow: { id: employeeId, displayName: displayName, mail: mail, title: title }
  team:
    from:
      - { connector: dir, object: group, project: true, join: [ { name: cn } ],
          flow: { name: cn, members: member } }
    to:
      - { connector: target, object: group, provision: true, deprovision: delete,
          flow: { name: name, member: members } }
"""


def test_ldif_to_csv_with_groups(tmp_path):
    env = Env(tmp_path)
    env.write("idsync.yaml", LDIF_TO_CSV)
    subprocess.run(["/usr/bin/python3", os.path.join(TOP, "bench", "gen.py"), "--users", "50",
                    "--groups", "4", "--format", "ldif", "--out", os.path.join(env.path, "gen")],
                   check=True)
    os.makedirs(os.path.join(env.path, "src"))
    os.makedirs(os.path.join(env.path, "out"))
    os.rename(os.path.join(env.path, "gen", "people.ldif"),
              os.path.join(env.path, "src", "directory.ldif"))
    env.run("cycle", "--full", expect=0)
    users = env.rows("out/users.csv", "id")
    assert len(users) == 50
    groups = env.rows("out/groups.csv", "name")
    assert len(groups) == 4
    members = set()
    for g in groups.values():
        members |= set(filter(None, g["member"].split(";")))
    assert members == set(users)  # every person is in exactly one department


def test_killed_export_reruns_without_loss_or_duplicates(tmp_path):
    n = 3000
    people = [person(i) for i in range(1, n + 1)]
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_LDIF)
    env.write("src/people.csv", people_csv(people))
    os.makedirs(os.path.join(env.path, "out"))
    # die during the import, then during the export, then finish
    p = env.run("cycle", "--full", env={"IDSYNC_FAULT": "next:1200"})
    assert p.returncode < 0 or p.returncode == 137, p.returncode
    p = env.run("cycle", "--full", env={"IDSYNC_FAULT": "submit:1700"})
    assert p.returncode < 0 or p.returncode == 137, p.returncode
    p = env.run("cycle", "--full", env={"IDSYNC_FAULT": "poll:2500"})
    assert p.returncode < 0 or p.returncode == 137, p.returncode
    env.run("cycle", expect=0)
    recs = ldif_records(env.read("out/changes.ldif"))
    dns = [r[0] for r in recs if "changetype: add" in r]
    assert len(dns) == n and len(set(dns)) == n
    # and a further cycle sends nothing more
    env.run("cycle", expect=0)
    assert len(ldif_records(env.read("out/changes.ldif"))) == len(recs)


def test_ldif_for_ad_carries_initial_passwords_once_even_after_a_kill(tmp_path):
    """An LDIF target meant for AD with an initial password drawn at random:
    the file carries unicodePwd as AD takes it (base64 of the quoted
    password in UTF-16LE, which ldapmodify sends as it is), and an export
    killed after the file was written and sent again (a new password drawn)
    does not add anyone twice."""
    n = 400
    people = [person(i) for i in range(1, n + 1)]
    env = Env(tmp_path)
    old = "        deprovision: delete\n"
    assert old in CSV_TO_LDIF
    env.write("idsync.yaml", CSV_TO_LDIF.replace(
        old, old + "        initial_flow: { unicodePwd: random_password(20) }\n", 1))
    env.write("src/people.csv", people_csv(people))
    os.makedirs(os.path.join(env.path, "out"))
    p = env.run("cycle", "--full", env={"IDSYNC_FAULT": "poll:300"})
    assert p.returncode < 0 or p.returncode == 137, p.returncode
    env.run("cycle", expect=0)
    recs = ldif_records(env.read("out/changes.ldif"))
    adds = [r for r in recs if "changetype: add" in r]
    assert len(adds) == n and len({r[0] for r in adds}) == n
    for r in adds:
        pw = [l for l in r if l.lower().startswith("unicodepwd:")]
        assert len(pw) == 1 and pw[0].startswith("unicodePwd:: "), r
        raw = base64.b64decode(pw[0].split(":: ", 1)[1])
        text = raw.decode("utf-16-le")
        assert len(text) == 22 and text[0] == '"' and text[-1] == '"', text
    env.run("cycle", "--full", expect=0)
    assert len(ldif_records(env.read("out/changes.ldif"))) == len(recs)


def test_killed_csv_export_reruns_without_loss_or_duplicates(tmp_path):
    """A CSV target answers only when its snapshot is written, at the end of
    the export: the changes waiting for it (3,000 people in 60 groups, more
    than a batch) are kept in a temporary file meanwhile. Killed while
    they are queued (the file is not written), then while the answers are
    recorded (the file is written, the store not yet told): the reruns
    finish with every person and group once, as an uninterrupted run
    leaves them."""
    n = 3000
    people = [person(i) for i in range(1, n + 1)]
    groups = {"g%02d" % g: ["E%04d" % i for i in range(g * 50 + 1, g * 50 + 51)]
              for g in range(n // 50)}
    env = csv_env(tmp_path, people, groups, max_deletes=5000)
    p = env.run("cycle", "--full", env={"IDSYNC_FAULT": "submit:1700"})
    assert p.returncode < 0 or p.returncode == 137, p.returncode
    assert not os.path.exists(os.path.join(env.path, "out/users.csv"))
    p = env.run("cycle", "--full", env={"IDSYNC_FAULT": "poll:2500"})
    assert p.returncode < 0 or p.returncode == 137, p.returncode
    env.run("cycle", expect=0)
    with open(os.path.join(env.path, "out/users.csv"), encoding="utf-8") as f:
        ids = [r["id"] for r in csv.DictReader(f)]
    assert len(ids) == n and len(set(ids)) == n
    expect_users(env, people)
    expect_groups(env, groups)
    # and a further cycle has nothing to send
    before = env.read("out/users.csv")
    env.run("cycle", expect=0)
    assert env.read("out/users.csv") == before
    last = next(r for r in last_runs(env) if r["step"] == "cycle")
    assert counter(last, "export_add") == 0 and counter(last, "errors") == 0, last


def test_deleted_person_leaves_target_groups_and_returns_on_rehire(tmp_path):
    """HR drops a person but its group export still lists them: the delta
    cycle deletes the user and takes it out of every target group (not a
    dangling member), and says which group names a missing person. When
    the person comes back, so does the membership."""
    people = [person(i) for i in range(1, 7)]
    groups = {"red": ["E0001", "E0002", "E0003"], "blue": ["E0003", "E0004"], "gray": ["E0005"]}
    env = csv_env(tmp_path, people, groups)
    env.run("cycle", "--full", expect=0)
    expect_groups(env, groups)

    gone = people.pop(2)  # E0003; groups.csv still lists it
    env.write("src/people.csv", people_csv(people))
    env.run("import", "hr", expect=0)
    # the preview of the deletion names the groups the sync takes up with it
    pv = env.json("preview", "hr", "E0003")
    named = {env.json("show", "cs", "hr", g)["mv_id"] for g in ("red", "blue")}
    assert {r["mv_id"] for r in pv["referrers"]} == named, pv["referrers"]
    assert {r["why"] for r in pv["referrers"]} == {"recompute"}
    assert "recomputed (this object leaves the metaverse)" in env.run(
        "preview", "hr", "E0003", expect=0).stdout
    p = env.run("cycle")
    assert p.returncode == 1, (p.stdout, p.stderr)
    expect_users(env, people)
    expect_groups(env, {"red": ["E0001", "E0002"], "blue": ["E0004"], "gray": ["E0005"]})
    unresolved = [e for e in errors_of(env) if e["code"] == "reference-unresolved"]
    assert sorted(e["anchor"] for e in unresolved) == ["blue", "red"], unresolved
    assert all("E0003" in e["message"] for e in unresolved), unresolved

    people.insert(2, gone)
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    expect_users(env, people)
    expect_groups(env, groups)


def test_person_out_of_target_scope_leaves_its_target_groups(tmp_path):
    """A person who stays in the metaverse but leaves a target's scope is
    deprovisioned there, and the target groups drop that member in the same
    cycle; back in scope, the member returns."""
    people = [person(i) for i in range(1, 5)]
    groups = {"red": ["E0001", "E0002", "E0003"], "blue": ["E0002"]}
    env = csv_env(tmp_path, people, groups)
    conf = env.read("idsync.yaml")
    scoped = conf.replace("        object: user\n        provision: true\n",
                          "        object: user\n        provision: true\n"
                          "        scope: 'title ~= \"Contractor\"'\n")
    assert scoped != conf
    env.write("idsync.yaml", scoped)
    env.run("cycle", "--full", expect=0)
    expect_groups(env, groups)

    people[1]["title"] = "Contractor"
    env.write("src/people.csv", people_csv(people))
    env.run("import", "hr", expect=0)
    pv = env.json("preview", "hr", "E0002")
    assert {r["why"] for r in pv["referrers"]} == {"outbound"} and len(pv["referrers"]) == 2
    p = env.run("cycle")
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert set(env.rows("out/users.csv", "id")) == {"E0001", "E0003", "E0004"}
    expect_groups(env, {"red": ["E0001", "E0003"], "blue": []})
    unresolved = [e for e in errors_of(env) if e["code"] == "reference-unresolved"]
    assert sorted(e["anchor"] for e in unresolved) == ["blue", "red"], unresolved
    # it says why the member has no object there (not "not provisioned yet")
    assert all("outside the scope of the `to` rule for target/user (`title ~= \"Contractor\"`)"
               in e["message"] for e in unresolved), unresolved

    people[1]["title"] = "Engineer"
    env.write("src/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    expect_users(env, people)
    expect_groups(env, groups)


def test_deleted_member_leaves_groups_of_a_store_from_an_older_idsync(tmp_path):
    """A store whose metaverse groups were written before idsync indexed
    reference values (simulated: the index and its marker removed) gets the
    index on its next sync, so the first deletion already finds its groups."""
    import sqlite3

    people = [person(i) for i in range(1, 5)]
    groups = {"red": ["E0001", "E0002"], "blue": ["E0002", "E0003"]}
    env = csv_env(tmp_path, people, groups)
    env.run("cycle", "--full", expect=0)
    db = sqlite3.connect(os.path.join(env.path, "idsync.db"))
    with db:
        assert db.execute("DELETE FROM joinkey WHERE attr = 'members'").rowcount == 4
        db.execute("DELETE FROM meta WHERE key = 'engine.reference-keys'")
    db.close()

    groups["red"].remove("E0002")
    del people[1]
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))  # red drops E0002, blue still lists it
    p = env.run("cycle")
    assert p.returncode == 1, (p.stdout, p.stderr)
    expect_users(env, people)
    expect_groups(env, {"red": ["E0001"], "blue": ["E0003"]})


def test_membership_changes_are_staged_by_value_and_applied_by_value(tmp_path):
    """An import records which members came and went (`show cs` shows them
    until the sync applies them); the delta cycle changes the target group
    by those members only, and a full sync agrees."""
    people = [person(i) for i in range(1, 9)]
    groups = {"red": ["E0001", "E0002", "E0003", "E0004"], "blue": ["E0005"]}
    env = csv_env(tmp_path, people, groups)
    env.run("cycle", "--full", expect=0)
    expect_groups(env, groups)
    cs = env.json("show", "cs", "hr", "red")
    assert cs["staged_reference_changes"] is None

    groups = {"red": ["E0001", "E0002", "E0004", "E0006"], "blue": ["E0005"]}
    env.write("src/groups.csv", groups_csv(groups))
    env.run("import", "hr", expect=0)
    staged = env.json("show", "cs", "hr", "red")["staged_reference_changes"]
    got = {(m["op"], v) for m in staged["mods"] for v in m["values"]}
    assert got == {("add", "E0006"), ("delete", "E0003")}, staged
    assert {m["attr"] for m in staged["mods"]} == {"members"}
    assert "reference values imported since the last sync" in env.run(
        "show", "cs", "hr", "red", expect=0).stdout

    env.run("cycle", expect=0)
    assert env.json("show", "cs", "hr", "red")["staged_reference_changes"] is None
    expect_groups(env, groups)
    exports = last_runs(env, 10)
    export = next(r for r in exports if r["step"] == "export")
    assert counter(export, "export-update") == 1  # the group, one change

    # a full sync resolves every member again and finds nothing to change
    env.run("sync", "--full", expect=0)
    env.run("export", "target", expect=0)
    expect_groups(env, groups)
    export = next(r for r in last_runs(env, 10) if r["step"] == "export")
    assert sum(counter(export, k) for k in ("export-add", "export-update", "export-delete")) == 0


def test_store_write_failure_rolls_back_and_history_counts_what_is_kept(tmp_path):
    """The store's disk fills up during an import, then during a sync (its
    files may grow by 160 KiB, less than either writes): each fails with the
    store's error, keeps
    nothing of the failed transaction, and its run in the history counts
    what the store holds, not what was attempted. Once there is room again
    the same steps finish and the target is complete."""
    n = 1000
    people = [person(i) for i in range(1, n + 1)]
    groups = {"g%02d" % g: ["E%04d" % i for i in range(g * 50 + 1, g * 50 + 51)]
              for g in range(n // 50)}
    env = csv_env(tmp_path, people, groups, max_deletes=5000)
    def room():
        # the store's files may grow by 160 KiB from here
        return 160 * 1024 + max(os.path.getsize(os.path.join(env.path, f))
                                for f in ("idsync.db", "idsync.db-wal")
                                if os.path.exists(os.path.join(env.path, f)))

    env.run("history", expect=0)  # the store is created with room to spare

    p = env.run("import", "hr", "--full", file_limit=room())
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "idsync.db" in p.stderr, p.stderr
    run = last_runs(env)[0]
    assert run["step"] == "full-import" and run["status"] == "failed", run
    assert counter(run, "read") == n + len(groups), run
    assert counter(run, "staged-add") == 0, run
    assert "Nothing was staged" in run["message"], run
    # nothing was kept: the next import stages every object again
    env.run("import", "hr", "--full", expect=0)
    assert counter(last_runs(env)[0], "staged-add") == n + len(groups)

    p = env.run("sync", file_limit=room())
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    run = last_runs(env)[0]
    assert run["step"] in ("full-sync", "delta-sync") and run["status"] == "failed", run
    assert counter(run, "projected") == 0 and counter(run, "provisioned") == 0, run
    assert "Nothing was synced" in run["message"], run
    env.run("sync", expect=0)
    run = last_runs(env)[0]
    assert run["status"] == "success", run
    assert counter(run, "projected") == n + len(groups), run
    env.run("export", "target", expect=0)
    expect_users(env, people)
    expect_groups(env, groups)


NESTED_GROUPS = """
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person: { path: src/people.csv, key: employeeId, attributes: [employeeId, givenName, sn] }
      team: { path: src/groups.csv, key: name, attributes: [name, members],
              references: { members: [person, team] } }
  dir:
    type: ldif
    settle: 0
    path: out/changes.ldif
    anchor: dn
    objects:
      user: { object_class: inetOrgPerson, attributes: [objectClass, uid, cn, sn] }
      group: { object_class: groupOfNames, attributes: [objectClass, cn, member],
               references: { member: [user, group] } }
metaverse:
  person:
    from:
      - { connector: hr, object: person, project: true, join: [ { employeeId: employeeId } ],
          flow: { employeeId: employeeId, givenName: givenName, sn: sn } }
    to:
      - connector: dir
        object: user
        provision: true
        flow: { dn: '"uid=" .. lower(employeeId) .. ",ou=People,dc=x"',
                objectClass: '{ "inetOrgPerson" }', uid: lower(employeeId),
                cn: 'givenName .. " " .. sn', sn: sn }
  team:
    from:
      - { connector: hr, object: team, project: true, join: [ { name: name } ],
          flow: { name: name, members: members } }
    to:
      - { connector: dir, object: group, provision: true,
          flow: { dn: '"cn=" .. name .. ",ou=Groups,dc=x"', objectClass: '{ "groupOfNames" }',
                  cn: name, member: members } }
"""


def test_groups_nested_in_a_cycle_are_created_then_completed(tmp_path):
    """Groups that contain each other (A in B, B in A: Active Directory
    allows it) and a group that contains itself waited for each other
    forever: each export said "references objects that do not exist yet".
    Now the first export creates them without the references among them
    (a group that waits only for A is created too), and the next export
    adds those; then nothing is left to send."""
    env = Env(tmp_path)
    env.write("idsync.yaml", NESTED_GROUPS)
    env.write("src/people.csv", people_csv([person(1), person(2), person(3)]))
    env.write("src/groups.csv", groups_csv({"A": ["E0001", "B"], "B": ["E0002", "A"],
                                            "C": ["E0003", "C"], "D": ["E0003", "A"]}))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)

    def members():
        held = ldif_replay(env.read("out/changes.ldif"))
        return {dn.split(",")[0][3:].upper(): sorted(v.split(",")[0].split("=")[1].upper()
                                                     for v in e.get("member", []))
                for dn, e in held.items() if dn.endswith("ou=groups,dc=x")}

    env.run("cycle", expect=0)
    assert members() == {"A": ["E0001"], "B": ["E0002"], "C": ["E0003"], "D": ["A", "E0003"]}
    pending = env.run("pending", "dir", expect=0).stdout
    for g in ("cn=A,", "cn=B,", "cn=C,"):
        assert g in pending, pending
    assert "cn=D," not in pending, pending
    env.run("cycle", expect=0)
    assert members() == {"A": ["B", "E0001"], "B": ["A", "E0002"], "C": ["C", "E0003"],
                         "D": ["A", "E0003"]}
    before = env.read("out/changes.ldif")
    env.run("cycle", expect=0)
    assert env.read("out/changes.ldif") == before
    assert env.run("errors", expect=0).stdout.strip().startswith("No errors"), \
        env.run("errors").stdout


def test_changed_outbound_flow_shows_in_the_sync_counters(tmp_path):
    """A new DN template renames every target object: the full sync that
    queues the renames said "nothing to do" (its counters knew only inbound
    changes); it now counts them as flowed-out, and the export renames."""
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_LDIF)
    people = [person(i) for i in range(1, 8)]
    env.write("src/people.csv", people_csv(people))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)
    env.run("cycle", "--full", expect=0)
    env.write("idsync.yaml", CSV_TO_LDIF.replace("ou=People,", "ou=Staff,"))
    sync = env.json("sync", "--full")["run"]
    assert counter(sync, "flowed-out") == 7 and counter(sync, "flowed") == 0, sync
    env.run("export", "dir", expect=0)
    export = next(r for r in last_runs(env) if r["step"] == "export")
    assert counter(export, "export-rename") == 7, export


@pytest.mark.parametrize("target", ["csv", "ldif"])
def test_large_membership_changes(tmp_path, target):
    """Half the members of a group of 400 leave in one delta cycle, then
    come back (200 changes each way, past the point where the target's
    members are compared sorted instead of one by one), by anchor (CSV
    target) and by DN (LDIF target): the target group ends exactly as the
    source says each time."""
    people = [person(i) for i in range(1, 401)]
    everyone = [p["id"] for p in people]
    if target == "csv":
        env = csv_env(tmp_path, people, {"big": everyone, "small": everyone[:3]})
    else:
        env = Env(tmp_path)
        env.write("idsync.yaml", NESTED_GROUPS)
        env.write("src/people.csv", people_csv(people))
        env.write("src/groups.csv", groups_csv({"big": everyone, "small": everyone[:3]}))
        os.makedirs(os.path.join(env.path, "out"), exist_ok=True)

    def members(name):
        if target == "csv":
            row = env.rows("out/groups.csv", "name")[name]
            return sorted(filter(None, row["member"].split(";")))
        held = ldif_replay(env.read("out/changes.ldif"))["cn=%s,ou=groups,dc=x" % name]
        return sorted(v.split(",")[0].split("=")[1].upper() for v in held.get("member", []))

    env.run("cycle", "--full", expect=0)
    assert members("big") == everyone
    for big in (everyone[::2], everyone, everyone[7:9]):
        env.write("src/groups.csv", groups_csv({"big": big, "small": everyone[:3]}))
        env.run("cycle", expect=0)
        assert members("big") == sorted(big)
        assert members("small") == everyone[:3]
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_run_history_is_pruned_by_each_cycle(tmp_path):
    """With run_history: 1s the second cycle, started more than a second
    after the first, removes the first cycle's runs and their errors (an
    ambiguous join recorded each time) but the newest (run ids go on from
    it) and keeps its own."""
    people = [person(1), person(2, mail="user1@example.com")]
    env = csv_env(tmp_path, people, {})
    env.write("idsync.yaml", env.read("idsync.yaml") + "run_history: 1s\n")
    env.write("out/users.csv", "id,externalId,displayName,mail,title,status\r\n"
                               "X1,,One,user1@example.com,,\r\nX2,,Two,user1@example.com,,\r\n")
    env.run("cycle")
    first = last_runs(env, 50)
    assert first and any(counter(r, "errors") > 0 for r in first), first
    newest = max(r["start_us"] for r in first)
    while time.time() * 1e6 < newest + 1_100_000:
        time.sleep(0.05)  # the retention is a matter of time having passed
    env.run("cycle")
    runs = last_runs(env, 50)
    newest_id = max(r["id"] for r in first)
    kept = {r["id"] for r in runs} & {r["id"] for r in first}
    assert kept == {newest_id}, runs
    assert min(r["id"] for r in runs if r["id"] != newest_id) > newest_id
    assert any(r["step"] == "cycle" and r["id"] > newest_id for r in runs)
    for r in first:
        if r["id"] != newest_id and counter(r, "errors") > 0:
            old = env.run("errors", str(r["id"]))
            assert "No errors" in old.stdout or old.returncode != 0, old.stdout


WRITER = r"""
import sys, time
path, text = sys.argv[1], sys.stdin.read()
lines = text.splitlines(keepends=True)
with open(path, "w", encoding="utf-8", newline="") as f:
    for i in range(0, len(lines), 10):
        f.write("".join(lines[i:i + 10]))
        f.flush()
        time.sleep(0.05)
"""


def test_source_file_still_being_written_is_read_whole(tmp_path):
    """An HR job rewrites the export while a cycle starts: idsync waits for
    the file to stay unchanged (`settle`, 2 s by default) instead of reading
    the first rows and staging the others as deletes; the target file it
    wrote itself is read back at once."""
    people = [person(i) for i in range(1, 301)]
    env = csv_env(tmp_path, people, {"all": [p["id"] for p in people]})
    env.write("idsync.yaml", env.read("idsync.yaml").replace("    settle: 0\n", ""))
    env.run("cycle", "--full", expect=0)
    expect_users(env, people)

    changed = [person(i, title="Lead") for i in range(1, 301)]
    path = os.path.join(env.path, "src", "people.csv")
    writer = subprocess.Popen(["/usr/bin/python3", "-c", WRITER, path], stdin=subprocess.PIPE,
                              text=True)
    writer.stdin.write(people_csv(changed))
    writer.stdin.close()
    deadline = time.monotonic() + 30
    while os.path.getsize(path) == 0 or os.path.getsize(path) > len(people_csv(changed)) - 100:
        assert time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.01)
    p = env.run("-v", "cycle", expect=0)
    assert writer.wait(timeout=60) == 0
    assert os.path.getsize(path) == len(people_csv(changed))
    assert re.search(r"event=file-settle connector=hr file=\S+people\.csv", p.stderr), p.stderr
    assert "event=file-settle connector=target" not in p.stderr, p.stderr
    runs = last_runs(env, 10)
    cycle = next(r for r in runs if r["step"] == "cycle")
    imp = next(r for r in runs if r.get("parent") == cycle["id"] and r["connector"] == "hr"
               and "import" in r["step"])
    assert imp["status"] == "success", imp
    assert counter(imp, "staged-update") == 300 and counter(imp, "staged-delete") == 0, imp
    expect_users(env, changed)
    expect_groups(env, {"all": [p["id"] for p in people]})


def test_renamed_column_stops_the_import_instead_of_clearing_the_attribute(tmp_path):
    """The HR export renames a column: every person loses `title`. idsync
    stops the import (the attribute guard) instead of clearing the title in
    the target; a few real removals pass; allowed once, the removals flow
    and the target's confirming import does not stop on idsync's own
    changes."""
    people = [person(i) for i in range(1, 41)]
    env = csv_env(tmp_path, people, {})
    env.run("cycle", "--full", expect=0)
    expect_users(env, people)

    # a few titles really removed: under the guard's share (50 %)
    few = [person(i, title="" if i <= 3 else "Engineer") for i in range(1, 41)]
    env.write("src/people.csv", people_csv(few))
    env.run("cycle", expect=0)
    expect_users(env, few)

    renamed = people_csv(people).replace(",title\r\n", ",jobTitle\r\n", 1)
    env.write("src/people.csv", renamed)
    p = env.run("cycle")
    assert p.returncode == 2, (p.stdout, p.stderr)
    imp = next(r for r in last_runs(env, 10) if r["connector"] == "hr")
    assert imp["status"] == "stopped-threshold", imp
    assert ("import of hr would remove every value of title from 37 of 40 objects (more than "
            "safety.import_max_clear_percent = 50%); nothing was staged") in imp["message"], imp
    assert "`idsync import hr --allow-deletes 37`" in imp["message"], imp
    assert counter(imp, "staged-update") == 0, imp
    expect_users(env, few)  # the target keeps its titles
    # the next cycle reads the same file again and stops again
    assert env.run("cycle").returncode == 2
    # `idsync check` names the column the file lacks
    p = env.run("check", expect=0)
    assert re.search(r"missing column:\s+title \(in attributes, not in the header", p.stdout), p.stdout

    env.run("import", "hr", "--allow-deletes", "37", expect=0)
    p = env.run("cycle", expect=0)
    cleared = [person(i, title="") for i in range(1, 41)]
    expect_users(env, cleared)
    runs = last_runs(env, 10)
    assert all(r["status"] == "success" for r in runs if r.get("parent") == runs[0]["id"]), runs


def test_hr_export_in_windows_1252_reaches_the_target_as_utf8(tmp_path):
    """A legacy HR system writes Windows-1252: with `encoding` the names
    arrive intact in the (UTF-8) target, a delta carries a changed name, and
    a byte that is not Windows-1252 fails the import, naming the line,
    without deleting anyone."""
    people = [person(1, sn="Müller"), person(2, sn="Šimůnek"), person(3, sn="Øster")]
    env = csv_env(tmp_path, people, {})
    env.write("idsync.yaml", env.read("idsync.yaml").replace(
        "  hr:\n    type: csv\n    settle: 0\n",
        "  hr:\n    type: csv\n    settle: 0\n    encoding: WINDOWS-1252\n", 1))

    def write_1252(rows):
        with open(os.path.join(env.path, "src", "people.csv"), "wb") as f:
            f.write(people_csv(rows).encode("cp1252", errors="strict") if isinstance(rows, list)
                    else rows)

    people[1]["sn"] = "Šimunek"  # ů is not in Windows-1252
    write_1252(people)
    env.run("cycle", "--full", expect=0)
    expect_users(env, people)
    assert "Müller" in env.read("out/users.csv")

    people[2]["sn"] = "Øster-Ågren"
    write_1252(people)
    env.run("cycle", expect=0)
    expect_users(env, people)

    bad = people_csv(people).encode("cp1252").replace(b"Given2", b"Given\x812")
    write_1252(bad)
    p = env.run("cycle")
    assert p.returncode == 4, (p.stdout, p.stderr)
    imp = next(r for r in last_runs(env, 10) if r["connector"] == "hr")
    assert imp["status"] == "failed", imp
    assert "people.csv:3: byte 0x81 is not WINDOWS-1252 text" in imp["message"], imp
    expect_users(env, people)
