"""Scenarios of issue 4 through the real `idsync` binary: CSV -> SCIM (users
and groups with members, a full cycle then delta cycles with every kind of
change: add, modify, rename, member add/remove, delete, out of scope ->
disable or delete), the same under each injected fault (the SCIM store ends
equal to the source: no duplicate, no lost object or membership), and SCIM
as a source (SCIM -> CSV).

What is asserted is what an administrator would check: the resources in the
SCIM service (read from the service itself), the CSV written, exit codes,
and what `check` and `history` say.
"""
import csv
import io
import json
import os
import re
import subprocess

import pytest

from fixtures.scim import (node_available, scim_proxy, scim_service,  # noqa: F401
                           scim_workdir)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
IDSYNC = os.environ.get("IDSYNC", os.path.join(TOP, "build-test", "idsync"))
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(IDSYNC), reason="idsync not built (%s)" % IDSYNC),
    pytest.mark.skipif(not node_available(), reason="node/npm not installed"),
]

CSV_TO_SCIM = """
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: src/people.csv
        key: employeeId
        attributes: [employeeId, givenName, sn, mail, title, dept]
      team:
        path: src/groups.csv
        key: name
        attributes: [name, members]
        references: {{ members: [person] }}
  cloud:
    type: scim
    url: {url}
    token_file: {token}
    timeout: 2s
    max_retries: 6
    concurrency: 4
    objects:
      User:
        attributes: [userName, externalId, displayName, name.givenName, name.familyName, title,
                     emails, active, enterprise:department]
      Group:
        attributes: [displayName, externalId, members]
        references: {{ members: [User] }}
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
          givenName: givenName
          sn: sn
          mail: mail
          title: title
          dept: dept
    to:
      - connector: cloud
        object: User
        provision: true
        deprovision: {deprovision}
        anchor_carrier: externalId
        scope: 'title ~= "Contractor"'
        join:
          - externalId: employeeId
          - userName: mail
        flow:
          externalId: employeeId
          userName: mail
          displayName: 'givenName .. " " .. sn'
          name.givenName: givenName
          name.familyName: sn
          title: title
          enterprise:department: dept
          emails: '{{ {{value = mail, type = "work", primary = true}} }}'
  team:
    from:
      - connector: hr
        object: team
        project: true
        join: [ {{ name: name }} ]
        flow: {{ name: name, members: members }}
    to:
      - connector: cloud
        object: Group
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ {{ externalId: name }} ]
        flow: {{ externalId: name, displayName: name, members: members }}
safety:
  max_deletes: 500
  max_delete_percent: 0
  import_max_delete_percent: 0
"""


class Env:
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

    def run(self, *args, expect=None, env=None):
        e = dict(os.environ)
        e.pop("IDSYNC_FAULT", None)
        e.setdefault("IDSYNC_SCIM_BACKOFF_MS", "20")
        if env:
            e.update(env)
        p = subprocess.run([IDSYNC, "-c", os.path.join(self.path, "idsync.yaml"), *args],
                           cwd=self.path, env=e, capture_output=True, text=True, timeout=600)
        if expect is not None:
            assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p


def person(i, **kw):
    p = {"id": "E%04d" % i, "given": "Given%d" % i, "sn": "Family%d" % i,
         "mail": "user%d@example.com" % i, "title": "Engineer", "dept": "R&D"}
    p.update(kw)
    return p


def people_csv(people):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["employeeId", "givenName", "sn", "mail", "title", "dept"])
    for p in people:
        w.writerow([p["id"], p["given"], p["sn"], p["mail"], p["title"], p["dept"]])
    return buf.getvalue()


def groups_csv(groups):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["name", "members"])
    for name, members in groups.items():
        w.writerow([name, ";".join(members)])
    return buf.getvalue()


def make_env(tmp_path, url, token_file, people, groups, deprovision="delete"):
    env = Env(tmp_path)
    env.write("idsync.yaml", CSV_TO_SCIM.format(url=url, token=token_file,
                                                deprovision=deprovision))
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))
    return env


def set_source(env, people, groups):
    env.write("src/people.csv", people_csv(people))
    env.write("src/groups.csv", groups_csv(groups))


def expect_scim(svc, people, groups, disabled=()):
    """The SCIM store equals the source: users (no duplicate), attributes,
    groups with exactly their members."""
    users = svc.users_by("externalId")
    in_scope = [p for p in people if p["title"] != "Contractor" or p["id"] in disabled]
    assert set(users) == {p["id"] for p in in_scope} | set(disabled)
    names = {}
    for p in in_scope:
        u = users[p["id"]]
        assert u["userName"] == p["mail"]
        assert u["displayName"] == "%s %s" % (p["given"], p["sn"])
        assert u["name"]["familyName"] == p["sn"]
        assert u.get("title") == p["title"]
        assert u[ENT]["department"] == p["dept"]
        assert u["emails"] == [{"value": p["mail"], "type": "work", "primary": True}]
        if p["id"] in disabled:
            assert u["active"] is False
        else:
            assert u.get("active", True) is not False
        names[u["id"]] = p["id"]
    grps = svc.groups_by("externalId")
    assert set(grps) == set(groups)
    for name, members in groups.items():
        got = sorted(names.get(m["value"], m["value"]) for m in grps[name].get("members", []))
        want = sorted(m for m in members if m in {p["id"] for p in in_scope} and
                      m not in disabled)
        # a disabled user stays a member (deprovision: disable keeps the object)
        want = sorted(set(want) | {m for m in members if m in disabled})
        assert got == want, (name, got, want)


def cycle_until_clean(env, tries=6):
    """Run cycles until one ends with exit 0 (faults may leave some work for
    the next one). Returns the exit codes."""
    codes = []
    for _ in range(tries):
        p = env.run("cycle")
        codes.append(p.returncode)
        assert p.returncode in (0, 1), (p.returncode, p.stdout, p.stderr)
        if p.returncode == 0:
            return codes
    raise AssertionError("no clean cycle after %d tries: %s\n%s" % (tries, codes, p.stderr))


def initial():
    people = [person(i) for i in range(1, 21)]
    groups = {"red": ["E0001", "E0002", "E0003"], "blue": ["E0004"], "empty": []}
    return people, groups


def changes(people, groups):
    """Every kind of change, applied to the source lists."""
    people[0]["title"] = "Director"                               # modify
    people[1].update(sn="Renamed", mail="renamed2@example.com")   # rename (userName)
    people.pop(2)                                                 # delete (E0003)
    people.append(person(99, title="Intern"))                     # add
    [p for p in people if p["id"] == "E0008"][0]["title"] = "Contractor"  # out of scope
    people[5]["dept"] = "Ops"                                     # extension attribute
    groups["red"] = ["E0001", "E0002", "E0099", "E0005"]          # member add/remove
    groups["blue"] = ["E0004", "E0006", "E0007"]
    groups.pop("empty")                                           # group delete
    groups["green"] = ["E0010"]                                   # group add
    return people, groups


@pytest.mark.parametrize("deprovision", ["delete", "disable"])
def test_csv_to_scim_full_then_every_kind_of_change(scim_service, tmp_path, deprovision):
    people, groups = initial()
    env = make_env(tmp_path, scim_service.url, scim_service.token_file, people, groups,
                   deprovision)
    check = env.run("check", expect=0).stdout
    assert re.search(r"patch:\s+supported", check), check
    assert re.search(r"updates:\s+PATCH", check), check

    env.run("cycle", "--full", expect=0)
    expect_scim(scim_service, people, groups)

    people, groups = changes(people, groups)
    set_source(env, people, groups)
    env.run("cycle", expect=0)
    gone = [p["id"] for p in people if p["title"] == "Contractor"]
    assert gone == ["E0008"]
    disabled = set(gone) | {"E0003"} if deprovision == "disable" else set()
    if deprovision == "disable":
        # the contractor's and the deleted person's objects stay, disabled,
        # with their last values
        people_view = [dict(p, title="Engineer") if p["id"] in gone else p for p in people]
        people_view.append(person(3))
        expect_scim(scim_service, people_view, groups, disabled=disabled)
    else:
        expect_scim(scim_service, people, groups)
    users = scim_service.users_by()
    assert ("E0003" in users) == (deprovision == "disable")
    assert users["E0002"]["userName"] == "renamed2@example.com"

    # a quiet cycle sends nothing that changes the service
    before = scim_service.stats()["byMethod"]
    env.run("cycle", expect=0)
    after = scim_service.stats()["byMethod"]
    for m in ("POST", "PATCH", "PUT", "DELETE"):
        assert after.get(m, 0) == before.get(m, 0), (m, before, after)

    if deprovision == "disable":
        # the deleted person is rehired and the contractor is staff again:
        # their users are joined again and made active, not created twice
        people.insert(2, person(3))
        [p for p in people if p["id"] == "E0008"][0]["title"] = "Engineer"
        set_source(env, people, groups)
        env.run("cycle", expect=0)
        expect_scim(scim_service, people, groups)
        users = scim_service.users_by("externalId")
        assert users["E0003"]["active"] is True and users["E0008"]["active"] is True
        before = scim_service.stats()["byMethod"]
        env.run("cycle", expect=0)
        after = scim_service.stats()["byMethod"]
        for m in ("POST", "PATCH", "PUT", "DELETE"):
            assert after.get(m, 0) == before.get(m, 0), (m, before, after)


FAULTS = [
    ("429", dict(mode="status", status=429, retryAfter="1", every=5, count=15)),
    ("503", dict(mode="status", status=503, every=4, count=30)),
    ("500-after-processing", dict(mode="after-status", status=500, every=4, count=30)),
    ("slow", dict(mode="slow", delayMs=3000, every=3, count=8)),
    ("drop-after-processing", dict(mode="drop", every=4, count=30)),
    ("drop-partial", dict(mode="drop-partial", every=5, count=20)),
]


@pytest.mark.parametrize("name,fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_csv_to_scim_under_faults(scim_service, scim_proxy, tmp_path, name, fault):
    people, groups = initial()
    env = make_env(tmp_path, scim_proxy.url, scim_service.token_file, people, groups)
    fault = dict(fault)
    mode = fault.pop("mode")
    # discovery (GET) is left alone so that each run starts; every write can fail
    scim_proxy.fault(mode, methods=["POST", "PATCH", "PUT", "DELETE"], **fault)
    p = env.run("cycle", "--full")
    assert p.returncode in (0, 1), (p.returncode, p.stderr)
    cycle_until_clean(env)
    scim_proxy.clear()
    expect_scim(scim_service, people, groups)

    people, groups = changes(people, groups)
    set_source(env, people, groups)
    scim_proxy.fault(mode, methods=["POST", "PATCH", "PUT", "DELETE"], **fault)
    cycle_until_clean(env)
    scim_proxy.clear()
    cycle_until_clean(env)
    expect_scim(scim_service, people, groups)
    assert scim_proxy.stats()["faults"] > 0


SCIM_TO_CSV = """
store: sqlite:idsync.db
connectors:
  cloud:
    type: scim
    url: {url}
    token_file: {token}
    page_size: 7
    objects:
      User:
        attributes: [userName, externalId, displayName, title, active, enterprise:department]
      Group:
        attributes: [displayName, members]
        references: {{ members: [User] }}
  out:
    type: csv
    settle: 0
    objects:
      user:
        path: out/users.csv
        key: login
        attributes: [login, name, title, department, enabled]
      group:
        path: out/groups.csv
        key: name
        attributes: [name, member]
        references: {{ member: [user] }}
metaverse:
  person:
    from:
      - connector: cloud
        object: User
        project: true
        join: [ {{ login: userName }} ]
        flow: {{ login: userName, name: displayName, title: title,
                department: 'attr("enterprise:department")', enabled: active }}
    to:
      - connector: out
        object: user
        provision: true
        deprovision: delete
        flow: {{ login: login, name: name, title: title, department: department,
                enabled: enabled }}
  team:
    from:
      - connector: cloud
        object: Group
        project: true
        join: [ {{ name: displayName }} ]
        flow: {{ name: displayName, members: members }}
    to:
      - connector: out
        object: group
        provision: true
        deprovision: delete
        flow: {{ name: name, member: members }}
"""


def read_csv(env, name, key):
    out = {}
    for r in csv.DictReader(io.StringIO(env.read(name))):
        out[r[key]] = r
    return out


def test_scim_as_source_to_csv(scim_service, tmp_path):
    ids = {}
    for i in range(1, 31):
        st, u = scim_service.request("POST", "/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
            "userName": "u%d@example.com" % i, "displayName": "User %d" % i,
            "title": "T%d" % i, "active": i % 2 == 0, ENT: {"department": "D%d" % (i % 3)}})
        assert st == 201, u
        ids[i] = u["id"]
    st, _ = scim_service.request("POST", "/Groups", {
        "displayName": "admins", "members": [{"value": ids[i]} for i in (1, 2, 3)]})
    assert st == 201
    env = Env(tmp_path)
    env.write("idsync.yaml", SCIM_TO_CSV.format(url=scim_service.url,
                                                token=scim_service.token_file))
    os.makedirs(os.path.join(env.path, "out"), exist_ok=True)
    env.run("cycle", "--full", expect=0)
    users = read_csv(env, "out/users.csv", "login")
    assert len(users) == 30
    assert users["u4@example.com"]["name"] == "User 4"
    assert users["u4@example.com"]["department"] == "D1"
    assert users["u4@example.com"]["enabled"] == "true"
    assert users["u5@example.com"]["enabled"] == "false"
    groups = read_csv(env, "out/groups.csv", "name")
    assert set(groups["admins"]["member"].split(";")) == {"u1@example.com", "u2@example.com",
                                                         "u3@example.com"}
    # changes in the cloud reach the file
    scim_service.request("PATCH", "/Users/%s" % ids[7], {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]})
    scim_service.request("DELETE", "/Users/%s" % ids[8])
    scim_service.request("PATCH", "/Groups/%s" % scim_service.groups_by("displayName")[
        "admins"]["id"], {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "add", "path": "members",
                                          "value": [{"value": ids[9]}]}]})
    env.run("cycle", expect=0)
    users = read_csv(env, "out/users.csv", "login")
    assert len(users) == 29 and "u8@example.com" not in users
    assert users["u7@example.com"]["title"] == "Boss"
    groups = read_csv(env, "out/groups.csv", "name")
    assert "u9@example.com" in groups["admins"]["member"].split(";")
