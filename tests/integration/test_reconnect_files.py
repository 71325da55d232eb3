"""Rebuilt directory with files as the connected systems (issue 5).

The source is an HR CSV whose key column (`oid`) plays the objectGUID; the
target is a CSV "cloud directory" keyed on `uid` that keeps our source
anchor in `externalId` (its anchor carrier). The source is then "rebuilt":
every person and team gets a new key, mails and names stay the same.

What is checked is what an administrator checks: the target files (the
same rows, only externalId changed), exit codes, run history, the plan
file, and the mails received by a real SMTP server (aiosmtpd).

Both situations of the issue:
  1. same store, rebuilt source: the import guard stops and says the source
     looks rebuilt; `reconnect hr --by mail --by name` re-joins;
  2. fresh store: the targets hold objects anchored to old values; the
     soft-match guard refuses them (anchor-mismatch); `reconnect` re-anchors.

Mails are sent by notify_after_run(), which `idsync cycle` calls after its
run: these tests expect exactly one mail for a new problem and none for an
unchanged one.
"""
import json
import os
import shutil

import pytest

from conftest import read_csv, write_csv, write_yaml
from fixtures.smtp import smtp_sink  # noqa: F401

N = 40  # people
TEAMS = {"sales": range(0, 10), "eng": range(10, 25), "ops": range(25, 40)}

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
        attributes: [oid, uid, givenName, sn, mail]
      team:
        path: src/teams.csv
        key: tid
        attributes: [tid, name, members]
        references: {{ members: [person] }}
  cloud:
    type: csv
    settle: 0
    objects:
      user:
        path: cloud/users.csv
        key: uid
        attributes: [uid, externalId, displayName, mail]
      group:
        path: cloud/groups.csv
        key: name
        attributes: [name, externalId, member]
        references: {{ member: [user] }}
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join:
          - sourceAnchor: oid
          - mail: mail
        flow:
          sourceAnchor: oid
          uid: uid
          mail: mail
          displayName: 'givenName .. " " .. sn'
    to:
      - connector: cloud
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join:
          - externalId: sourceAnchor
          - mail: mail
        flow:
          uid: uid
          externalId: sourceAnchor
          displayName: displayName
          mail: mail
  group:
    from:
      - connector: hr
        object: team
        project: true
        join: [ {{ sourceAnchor: tid }} ]
        flow: {{ sourceAnchor: tid, name: name, members: members }}
    to:
      - connector: cloud
        object: group
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ {{ externalId: sourceAnchor }}, {{ name: name }} ]
        flow: {{ name: name, externalId: sourceAnchor, member: members }}
notify:
  smtp: {smtp}
  from: idsync@example.org
  to: [identity-admins@example.org]
"""


def write_source(workdir, prefix, extra_people=(), given=None):
    """People and teams keyed `prefix-NNN` (a rebuild changes the prefix)."""
    given = given or {}
    people = [["%s-%03d" % (prefix, i), "u%03d" % i, given.get(i, "Given%d" % i), "Family%d" % i,
               "user%d@example.org" % i] for i in range(N)]
    people += [list(p) for p in extra_people]
    write_csv(workdir / "src/people.csv", ["oid", "uid", "givenName", "sn", "mail"], people)
    teams = [["%s-t-%s" % (prefix, name), name, ";".join("%s-%03d" % (prefix, i) for i in members)]
             for name, members in TEAMS.items()]
    write_csv(workdir / "src/teams.csv", ["tid", "name", "members"], teams)


def setup_env(workdir, sink):
    write_yaml(workdir / "idsync.yaml", CONFIG.format(smtp=sink.url))
    os.makedirs(workdir / "cloud", exist_ok=True)
    write_source(workdir, "old")


def cloud(workdir):
    return (read_csv(workdir / "cloud/users.csv", "uid"),
            read_csv(workdir / "cloud/groups.csv", "name"))


def members(groups, name):
    return set(filter(None, groups[name]["member"].split(";")))


def expect_reanchored(workdir, before, prefix):
    """Every target row is still there with the same key and values; only
    externalId carries the new anchor; memberships are intact."""
    users, groups = cloud(workdir)
    old_users, old_groups = before
    assert set(users) == set(old_users)
    assert set(groups) == set(old_groups)
    for uid, row in users.items():
        assert row["externalId"] == "%s-%s" % (prefix, uid[1:]), row
        for col in ("displayName", "mail"):
            assert row[col] == old_users[uid][col], (uid, col)
    for name, row in groups.items():
        assert row["externalId"] == "%s-t-%s" % (prefix, name)
        assert members(groups, name) == members(old_groups, name)


def history(idsync):
    return idsync("history", "--json").json()


def test_rebuilt_source_same_store(workdir, idsync, smtp_sink):
    setup_env(workdir, smtp_sink)
    r = idsync("cycle")
    assert r.code == 0, r
    before = cloud(workdir)
    assert len(before[0]) == N and len(before[1]) == len(TEAMS)
    assert smtp_sink.messages() == []  # nothing went wrong: no mail

    # the directory is rebuilt: new keys, same people; one more user shares
    # u007's mail address (the ambiguous pair)
    write_source(workdir, "new", extra_people=[["new-dup", "dup01", "Dup", "Licate",
                                                "user7@example.org"]])
    r = idsync("cycle")
    assert r.code == 2, r  # stopped by the import guard
    assert cloud(workdir) == before  # nothing changed in the target
    assert "looks rebuilt" in r.out and "idsync reconnect hr --by mail" in r.out, r.out
    msgs = smtp_sink.messages()
    assert len(msgs) == 1, "expected exactly one mail (is notify_after_run wired into cycle?)"
    body = smtp_sink.body(msgs[0])
    assert "source looks rebuilt" in msgs[0]["Subject"]
    assert msgs[0]["To"] == "identity-admins@example.org"
    # the mail wraps its lines: compare with the line breaks folded
    assert "idsync reconnect hr --by mail" in " ".join(body.split())
    assert "errors" in body

    # the unchanged problem is not mailed again
    r = idsync("cycle")
    assert r.code == 2, r
    assert len(smtp_sink.messages()) == 1

    # preview: every person but the pair, and every team, is re-anchor
    r = idsync("reconnect", "hr", "--by", "mail", "--by", "name", "--json")
    assert r.code == 0, r
    plan = r.json()
    assert plan["totals"]["re-anchor"] == N - 1 + len(TEAMS)
    assert plan["totals"]["ambiguous"] == 2
    assert plan["totals"]["no-candidate"] == 0
    assert plan["totals"]["type-mismatch"] == 0
    amb = [row for row in plan["rows"] if row["action"] == "ambiguous"]
    assert {row["anchor"] for row in amb} == {"new-007", "new-dup"}
    for row in amb:
        assert [c["anchor"] for c in row["candidates"]] == ["old-007"]
    ra = {row["anchor"]: row for row in plan["rows"] if row["action"] == "re-anchor"}
    assert ra["new-003"]["old_anchor"] == "old-003"
    assert ra["new-003"]["targets"][0]["anchor"] == "u003"  # same target object
    assert ra["new-t-eng"]["old_anchor"] == "old-t-eng"

    # human preview names the pair and the totals
    r = idsync("reconnect", "hr", "--by", "mail,name")
    assert r.code == 0, r
    assert "ambiguous" in r.out and "candidate" in r.out and "old-007" in r.out
    assert "Totals: re-anchor %d, already-linked 0, ambiguous 2" % (N - 1 + len(TEAMS)) in r.out

    # the plan file records exactly the preview
    r = idsync("reconnect", "hr", "--by", "mail", "--by", "name", "--plan", "plan.json")
    assert r.code == 0, r
    saved = json.load(open(workdir / "plan.json"))
    assert [(x["action"], x["anchor"], x["fingerprint"]) for x in saved["rows"]] == \
        [(x["action"], x["anchor"], x["fingerprint"]) for x in plan["rows"]]
    assert saved["totals"] == plan["totals"]
    assert cloud(workdir) == before

    # the source changes after the plan: apply refuses and changes nothing
    shutil.copy(workdir / "src/people.csv", workdir / "people.keep")
    write_source(workdir, "new", extra_people=[["new-dup", "dup01", "Dup", "Licate",
                                                "user7@example.org"]], given={3: "Renamed"})
    r = idsync("reconnect", "--apply", "plan.json")
    assert r.code == 2, r
    assert "no longer matches 1 object" in r.out + r.err
    r = idsync("show", "cs", "hr", "new-000", "--json")
    assert r.code != 0  # not applied, not even partly
    # the refused apply is a failed run: that is news, once
    msgs = smtp_sink.messages()
    assert len(msgs) == 2
    assert "reconnect of hr failed" in msgs[1]["Subject"]
    assert "plan-mismatch" in smtp_sink.body(msgs[1])
    shutil.copy(workdir / "people.keep", workdir / "src/people.csv")

    # apply: recorded in run history with counters
    r = idsync("reconnect", "--apply", "plan.json")
    assert r.code == 0, r
    run = history(idsync)["runs"][0]
    assert run["step"] == "reconnect" and run["status"] == "success"
    assert run["counters"]["joined"] == N - 1 + len(TEAMS)
    assert run["counters"]["disconnected"] == N - 1 + len(TEAMS)
    assert cloud(workdir) == before  # apply itself writes nothing to targets

    # idempotent: applying again finds nothing to do
    r = idsync("reconnect", "--apply", "plan.json")
    assert r.code == 0, r
    run = history(idsync)["runs"][0]
    assert run["counters"]["joined"] == 0 and run["counters"]["unchanged"] == N - 1 + len(TEAMS)

    # the pair, one by one: new-007 is u007; the duplicate was a mistake
    r = idsync("reconnect", "hr", "--object", "new-007", "--to", "old-007", "--plan", "one.json")
    assert r.code == 0, r
    one = json.load(open(workdir / "one.json"))
    assert [x["action"] for x in one["rows"]] == ["re-anchor"]
    r = idsync("reconnect", "--apply", "one.json")
    assert r.code == 0, r
    write_source(workdir, "new")

    # the next cycle writes only the anchor carriers: no create, no delete
    r = idsync("cycle", "--dry-run", "--json")
    assert r.code == 0, r
    pending = r.json()["pending"]
    assert {p["op"] for p in pending} == {"modify"}
    assert len(pending) == N + len(TEAMS)
    for p in pending:
        assert [c["attr"] for c in p["changes"]] == ["externalId"], p
    r = idsync("cycle")
    assert r.code == 0, r
    expect_reanchored(workdir, before, "new")

    # a change in the new source reaches the target in the next delta cycle
    write_source(workdir, "new", given={5: "Changed"})
    r = idsync("cycle")
    assert r.code == 0, r
    users, _ = cloud(workdir)
    assert users["u005"]["displayName"] == "Changed Family5"
    assert users["u005"]["externalId"] == "new-005"

    # quiet cycle: no new mail
    r = idsync("cycle")
    assert r.code == 0, r
    assert len(smtp_sink.messages()) == 2


def test_fresh_store(workdir, idsync, smtp_sink):
    setup_env(workdir, smtp_sink)
    assert idsync("cycle").code == 0
    before = cloud(workdir)

    # the sync server is rebuilt too: no store, a rebuilt source
    for f in os.listdir(workdir):
        if f.startswith("idsync.db"):
            os.remove(workdir / f)
    write_source(workdir, "fresh")
    r = idsync("cycle")
    assert r.code == 1, r  # completed with object errors
    assert cloud(workdir) == before  # 0 creates, 0 updates, 0 deletes
    errs = idsync("errors", "--json").json()
    codes = [e["code"] for e in errs["errors"]]
    assert codes.count("anchor-mismatch") == N + len(TEAMS) or \
        errs["total"] >= N + len(TEAMS)
    msgs = smtp_sink.messages()
    assert len(msgs) == 1, "expected exactly one mail (is notify_after_run wired into cycle?)"
    body = smtp_sink.body(msgs[0])
    assert "anchor-mismatch" in body
    assert "externalId" in body

    # quiet cycle: nothing new
    r = idsync("cycle")
    assert cloud(workdir) == before
    assert len(smtp_sink.messages()) == 1

    r = idsync("reconnect", "--by", "mail", "--by", "name", "--plan", "plan.json", "--json")
    assert r.code == 0, r
    plan = r.json()
    assert plan["totals"]["re-anchor"] == N + len(TEAMS)
    assert plan["totals"]["ambiguous"] == 0
    assert plan["totals"]["no-candidate"] == 0
    row = next(x for x in plan["rows"] if x["action"] == "re-anchor" and x["type"] == "user"
               and x["cs_anchor"] == "u012")
    assert row["old_anchor"] == "old-012" and row["new_anchor"] == "fresh-012"

    r = idsync("reconnect", "--apply", "plan.json")
    assert r.code == 0, r
    r = idsync("cycle")
    assert r.code == 0, r
    expect_reanchored(workdir, before, "fresh")
    # applied twice: nothing to do
    r = idsync("reconnect", "--apply", "plan.json")
    assert r.code == 0, r
    assert history(idsync)["runs"][0]["counters"]["joined"] == 0
    r = idsync("cycle")
    assert r.code == 0, r
    assert len(smtp_sink.messages()) == 1


def test_usage_errors(workdir, idsync, smtp_sink):
    setup_env(workdir, smtp_sink)
    assert idsync("cycle").code == 0
    r = idsync("reconnect")
    assert r.code == 3 and "--by" in r.err
    r = idsync("reconnect", "--by", "nosuchattr")
    assert r.code == 3 and "nosuchattr" in r.err
    r = idsync("reconnect", "nosuch", "--by", "mail")
    assert r.code == 3 and "nosuch" in r.err
    r = idsync("reconnect", "hr", "--object", "x")
    assert r.code == 3 and "--to" in r.err
    r = idsync("reconnect", "--apply", "missing.json")
    assert r.code == 3
    (workdir / "bad.json").write_text("{\"rows\": 1}")
    r = idsync("reconnect", "--apply", "bad.json")
    assert r.code == 3 and "not a reconnect plan" in r.err
    # a plan cut short (a full disk, an interrupted copy) is refused before
    # anything is looked at, naming the file; the store is not touched
    r = idsync("reconnect", "hr", "--by", "mail", "--plan", "whole.json")
    assert r.code == 0, r
    whole = (workdir / "whole.json").read_text()
    assert whole.count("\n{") > 2
    (workdir / "cut.json").write_text(whole[: len(whole) * 2 // 3])
    runs = len(history(idsync)["runs"])
    r = idsync("reconnect", "--apply", "cut.json")
    assert r.code == 3, r
    assert "cut.json" in r.err and "cut short" in r.err, r.err
    assert len(history(idsync)["runs"]) == runs
