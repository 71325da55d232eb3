"""Scenarios of issue 3 through the real `idsync` binary, with real
directories: OpenLDAP -> OpenLDAP, AD (Samba) -> OpenLDAP, CSV -> OpenLDAP
and CSV -> AD. Users, groups (nested, and one over 1,500 members) and
contacts; after the first full cycle every kind of change on the source
reaches the target through a delta cycle, a quiet cycle exports nothing,
a server restart during an import or an export is survived, hostile values
arrive unchanged.

What is asserted is what an administrator checks: the target directory read
back with ldapsearch, exit codes, and the counters of `idsync history`.
"""
import base64
import json
import os
import subprocess

import pytest

from fixtures.samba import (BASE as AD_BASE, CONTACTS as AD_CONTACTS,  # noqa: F401
                            GROUPS as AD_GROUPS, PEOPLE as AD_PEOPLE, SEED_USERS, SYNC_OU,
                            samba_dc, samba_factory, samba_template)
from fixtures.slapd import entry_ldif, server_loss_env, slapd_factory, wait_for  # noqa: F401
from test_e2e_files import (IDSYNC, Env, counter, exports_of_last_cycle, last_runs,  # noqa: F401
                             remove_store)

pytestmark = pytest.mark.skipif(not os.path.exists(IDSYNC), reason="idsync not built")

SUFFIX = "dc=example,dc=org"
PEOPLE = "ou=People," + SUFFIX
GROUPS = "ou=Groups," + SUFFIX
CONTACTS = "ou=Contacts," + SUFFIX
HOSTILE = ["star*", "paren(x)", "back\\slash", "#lead", "trail space ",
           "comma,plus+quote\"lt<gt>semi;eq=", "caf\u00e9 \u65e5\u672c", "*)(uid=*"]
BIG = 1600


def norm(dn):
    return ",".join(p.strip().lower() for p in dn.split(","))


def people_of(server, base, key="uid"):
    return {a[key][0]: a for dn, a in server.search(base, "(objectClass=inetOrgPerson)",
                                                     ["*"]) if key in a}


def group_members(server, dn):
    g = server.get(dn, ["member"])
    return None if g is None else {norm(m) for m in g.get("member", [])}


def target_ldap_connector(dst, objects="user, group, contact"):
    return """
  dst:
    type: ldap
    url: {url}
    bind_dn: "{dn}"
    password_file: {pw}
    base: "{suffix}"
    create_parents: true
    window: 64
    objects:
      user:
        base: {people}
        filter: (objectClass=inetOrgPerson)
        attributes: [uid, cn, sn, givenName, mail, title, employeeNumber, description]
        object_classes: [inetOrgPerson]
      group:
        base: {groups}
        filter: (objectClass=groupOfNames)
        attributes: [cn, description, member]
        object_classes: [groupOfNames]
        references: {{ member: [user, group, contact] }}
      contact:
        base: {contacts}
        filter: (objectClass=inetOrgPerson)
        attributes: [cn, sn, mail, employeeNumber]
        object_classes: [inetOrgPerson]
""".format(url=dst.url, dn=dst.rootdn, pw=dst.password_file, suffix=SUFFIX, people=PEOPLE,
           groups=GROUPS, contacts=CONTACTS)


# ---- OpenLDAP -> OpenLDAP -------------------------------------------------------

OL_TO_OL = """store: sqlite:idsync.db
connectors:
  src:
    type: ldap
    url: {url}
    bind_dn: "{dn}"
    password_file: {pw}
    base: "{suffix}"
    page_size: 500
    objects:
      person:
        base: {people}
        filter: (&(objectClass=inetOrgPerson)(!(description=hidden)))
        attributes: [uid, cn, sn, givenName, mail, title, description]
      group:
        base: {groups}
        filter: (objectClass=groupOfNames)
        attributes: [cn, description, member]
        references: {{ member: [person, group] }}
{target}
metaverse:
  person:
    from:
      - connector: src
        object: person
        project: true
        join: [ {{ sourceAnchor: _anchor }} ]
        flow:
          sourceAnchor: _anchor
          uid: uid
          cn: cn
          sn: sn
          givenName: givenName
          mail: mail
          title: title
          path: dn_parent(_dn)
    to:
      - connector: dst
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: employeeNumber
        join: [ {{ employeeNumber: sourceAnchor }} ]
        flow:
          dn: '"uid=" .. dn_escape(uid) .. "," .. path'
          employeeNumber: sourceAnchor
          uid: uid
          cn: cn
          sn: sn
          givenName: givenName
          mail: mail
          title: title
  group:
    from:
      - connector: src
        object: group
        project: true
        join: [ {{ sourceAnchor: _anchor }} ]
        flow: {{ sourceAnchor: _anchor, name: cn, members: member }}
    to:
      - connector: dst
        object: group
        provision: true
        deprovision: delete
        anchor_carrier: description
        join: [ {{ description: sourceAnchor }} ]
        flow:
          dn: '"cn=" .. dn_escape(name) .. ",{groups}"'
          cn: name
          description: sourceAnchor
          member: members
safety:
  max_deletes: 100
  max_delete_percent: 0
"""


def seed_source(s, n=BIG):
    path = os.path.join(s.dir, "seed.ldif")
    with open(path, "w") as f:
        for i in range(n):
            f.write(entry_ldif("uid=u%d,%s" % (i, PEOPLE), {
                "objectClass": "inetOrgPerson", "uid": "u%d" % i, "cn": "User %d" % i,
                "sn": "S%d" % i, "givenName": "G%d" % i, "mail": "u%d@example.org" % i,
                "title": "Engineer"}))
        for i, v in enumerate(HOSTILE):
            f.write(entry_ldif("uid=h%d,%s" % (i, PEOPLE), {
                "objectClass": "inetOrgPerson", "uid": "h%d" % i, "cn": v, "sn": v,
                "title": v}))
        f.write(entry_ldif("cn=small,%s" % GROUPS, {
            "objectClass": "groupOfNames", "cn": "small",
            "member": ["uid=u%d,%s" % (i, PEOPLE) for i in range(5)]}))
        f.write(entry_ldif("cn=nested,%s" % GROUPS, {
            "objectClass": "groupOfNames", "cn": "nested",
            "member": ["cn=small,%s" % GROUPS, "uid=u5,%s" % PEOPLE]}))
        f.write(entry_ldif("cn=big,%s" % GROUPS, {
            "objectClass": "groupOfNames", "cn": "big",
            "member": ["uid=u%d,%s" % (i, PEOPLE) for i in range(n)]}))
    s.slapadd(path)


def assert_people_equal(src, dst):
    a = people_of(src, PEOPLE)
    b = people_of(dst, PEOPLE)
    a = {k: v for k, v in a.items() if v.get("description") != ["hidden"]}
    assert sorted(a) == sorted(b)
    for uid, e in a.items():
        for attr in ("cn", "sn", "mail", "title"):
            assert sorted(e.get(attr, [])) == sorted(b[uid].get(attr, [])), (uid, attr)


@pytest.fixture
def ol_env(slapd_factory, tmp_path):
    src = slapd_factory("src", start=False)
    seed_source(src)
    src.start()
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    os.makedirs(env.path, exist_ok=True)
    env.write("idsync.yaml", OL_TO_OL.format(
        url=src.url, dn=src.rootdn, pw=src.password_file, suffix=SUFFIX, people=PEOPLE,
        groups=GROUPS, target=target_ldap_connector(dst)))
    return env, src, dst


def test_openldap_to_openldap_full_delta_quiet(ol_env):
    env, src, dst = ol_env
    env.run("cycle", "--full", expect=0)
    assert_people_equal(src, dst)
    assert len(group_members(dst, "cn=big,%s" % GROUPS)) == BIG
    assert group_members(dst, "cn=nested,%s" % GROUPS) == {
        norm("cn=small,%s" % GROUPS), norm("uid=u5,%s" % PEOPLE)}
    for i, v in enumerate(HOSTILE):
        assert people_of(dst, PEOPLE)["h%d" % i]["cn"] == [v]

    # every kind of change on the source
    src.add("uid=fresh,%s" % PEOPLE, {"objectClass": "inetOrgPerson", "uid": "fresh",
                                      "cn": "Fresh", "sn": "F", "mail": "fresh@example.org"})
    src.modify_ldif("dn: uid=u10,%s\nchangetype: modify\nreplace: title\ntitle: Director\n"
                    % PEOPLE)
    src.modify_ldif("dn: uid=u11,%s\nchangetype: modrdn\nnewrdn: uid=u11r\ndeleteoldrdn: 1\n"
                    % PEOPLE)
    src.add("ou=Staff,%s" % PEOPLE, {"objectClass": "organizationalUnit", "ou": "Staff"})
    src.modify_ldif("dn: uid=u12,%s\nchangetype: modrdn\nnewrdn: uid=u12\ndeleteoldrdn: 1\n"
                    "newsuperior: ou=Staff,%s\n" % (PEOPLE, PEOPLE))
    src.modify_ldif("dn: cn=small,%s\nchangetype: modify\nadd: member\nmember: uid=u30,%s\n-\n"
                    "delete: member\nmember: uid=u0,%s\n" % (GROUPS, PEOPLE, PEOPLE))
    # (refint on the source drops u13 from its groups when it is deleted; u14 only
    # leaves the scope, so it is taken out of big explicitly)
    src.modify_ldif("dn: cn=big,%s\nchangetype: modify\ndelete: member\nmember: uid=u40,%s\n"
                    "member: uid=u14,%s\n" % (GROUPS, PEOPLE, PEOPLE))
    src.delete("uid=u13,%s" % PEOPLE)
    src.modify_ldif("dn: uid=u14,%s\nchangetype: modify\nreplace: description\n"
                    "description: hidden\n" % PEOPLE)  # leaves the scope filter
    env.run("cycle", expect=0)
    got = people_of(dst, PEOPLE)
    assert got["fresh"]["mail"] == ["fresh@example.org"]
    assert got["u10"]["title"] == ["Director"]
    assert "u11r" in got and "u11" not in got
    assert dst.get("uid=u12,ou=Staff,%s" % PEOPLE) is not None
    assert dst.get("uid=u12,%s" % PEOPLE) is None
    assert "u13" not in got and "u14" not in got
    small = group_members(dst, "cn=small,%s" % GROUPS)
    assert norm("uid=u30,%s" % PEOPLE) in small and norm("uid=u0,%s" % PEOPLE) not in small
    big = group_members(dst, "cn=big,%s" % GROUPS)
    assert norm("uid=u40,%s" % PEOPLE) not in big and len(big) == BIG - 3  # u13, u14 gone
    assert_people_equal(src, dst)

    # nothing changed: nothing exported
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_rename_reaches_groups_of_a_target_without_refint(slapd_factory, tmp_path):
    """A target slapd without referential integrity keeps whatever member
    DNs it is given: when a user is renamed (and another moved to another
    OU), idsync itself takes the old DN out of every group of the target and
    puts the new one in, in the same delta cycle."""
    src = slapd_factory("src", start=False)
    seed_source(src, n=40)
    src.start()
    dst = slapd_factory("dst", refint=False)
    env = Env(tmp_path / "work")
    os.makedirs(env.path, exist_ok=True)
    env.write("idsync.yaml", OL_TO_OL.format(
        url=src.url, dn=src.rootdn, pw=src.password_file, suffix=SUFFIX, people=PEOPLE,
        groups=GROUPS, target=target_ldap_connector(dst)))
    env.run("cycle", "--full", expect=0)
    assert norm("uid=u3,%s" % PEOPLE) in group_members(dst, "cn=small,%s" % GROUPS)

    src.modify_ldif("dn: uid=u3,%s\nchangetype: modrdn\nnewrdn: uid=u3r\ndeleteoldrdn: 1\n"
                    % PEOPLE)
    src.add("ou=Staff,%s" % PEOPLE, {"objectClass": "organizationalUnit", "ou": "Staff"})
    src.modify_ldif("dn: uid=u5,%s\nchangetype: modrdn\nnewrdn: uid=u5\ndeleteoldrdn: 1\n"
                    "newsuperior: ou=Staff,%s\n" % (PEOPLE, PEOPLE))
    # the source's refint rewrites its groups in the background
    wait_for(lambda: {norm("uid=u3r,%s" % PEOPLE), norm("uid=u5,ou=Staff,%s" % PEOPLE)} <=
             group_members(src, "cn=big,%s" % GROUPS), 10, "refint on the source")
    env.run("cycle", expect=0)
    assert dst.get("uid=u3r,%s" % PEOPLE) is not None and dst.get("uid=u3,%s" % PEOPLE) is None
    assert dst.get("uid=u5,ou=Staff,%s" % PEOPLE) is not None
    want = {"small": ["uid=u3r,%s" % PEOPLE], "big": ["uid=u3r,%s" % PEOPLE,
            "uid=u5,ou=Staff,%s" % PEOPLE], "nested": ["uid=u5,ou=Staff,%s" % PEOPLE]}
    for g, new in want.items():
        members = group_members(dst, "cn=%s,%s" % (g, GROUPS))
        for m in new:
            assert norm(m) in members, (g, m)
        assert norm("uid=u3,%s" % PEOPLE) not in members, g
        assert norm("uid=u5,%s" % PEOPLE) not in members, g
    assert group_members(dst, "cn=big,%s" % GROUPS) == {
        norm(m) for m in group_members(src, "cn=big,%s" % GROUPS)}

    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    # refint rewrote the source's groups without a change syncrepl reports:
    # their old member DNs still resolve (former DNs), so a full sync keeps
    # the members too
    env.run("sync", "--full", expect=0)
    p = env.run("export", "dst", expect=0)
    assert "nothing to do" in p.stdout, p.stdout


def connected_to(pid, port):
    """True when process `pid` has an established TCP connection to `port`."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :%d )" % port],
                         capture_output=True, text=True).stdout
    return ("pid=%d," % pid) in out


def test_openldap_restart_during_import_and_export(ol_env):
    env, src, dst = ol_env
    # import from the source while it restarts: restart once idsync is connected
    p = subprocess.Popen([IDSYNC, "-c", os.path.join(env.path, "idsync.yaml"), "import", "src",
                          "--full"], cwd=env.path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=server_loss_env())
    wait_for(lambda: connected_to(p.pid, src.port) or p.poll() is not None, 60,
             "idsync to connect to the source")
    src.restart()
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    env.run("sync", expect=0)
    # export into the target while it restarts
    p = subprocess.Popen([IDSYNC, "-c", os.path.join(env.path, "idsync.yaml"), "export", "dst"],
                         cwd=env.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=server_loss_env())
    wait_for(lambda: len(dst.search(PEOPLE, "(uid=*)", ["1.1"])) > 50, 60, "the first exports")
    dst.restart()
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    env.run("cycle", expect=0)
    assert_people_equal(src, dst)
    assert len(group_members(dst, "cn=big,%s" % GROUPS)) == BIG


# ---- CSV -> OpenLDAP and CSV -> AD --------------------------------------------------

CSV_SOURCE = """
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: hr/people.csv
        key: employeeId
        attributes: [employeeId, givenName, sn, mail, title]
      team:
        path: hr/teams.csv
        key: name
        attributes: [name, members]
        references: {{ members: [person, team] }}
"""


def people_csv(people):
    rows = ["employeeId,givenName,sn,mail,title"]
    for p in people:
        rows.append(",".join('"%s"' % str(p[k]).replace('"', '""')
                             for k in ("id", "given", "sn", "mail", "title")))
    return "\r\n".join(rows) + "\r\n"


def teams_csv(teams):
    rows = ["name,members"]
    for name, members in teams.items():
        rows.append('"%s","%s"' % (name, ";".join(members)))
    return "\r\n".join(rows) + "\r\n"


def hr_people(n):
    return [{"id": "E%05d" % i, "given": "Given%d" % i, "sn": "Family%d" % i,
             "mail": "e%d@example.org" % i, "title": "Engineer"} for i in range(n)]


CSV_TO_OL = """store: sqlite:idsync.db
connectors:
{source}
{target}
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ {{ employeeId: employeeId }} ]
        flow: {{ employeeId: employeeId, givenName: givenName, sn: sn, mail: mail, title: title }}
    to:
      - connector: dst
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: employeeNumber
        join: [ {{ employeeNumber: employeeId }} ]
        flow:
          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",{people}"'
          employeeNumber: employeeId
          uid: lower(employeeId)
          cn: 'givenName .. " " .. sn'
          sn: sn
          givenName: givenName
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
      - connector: dst
        object: group
        provision: true
        deprovision: delete
        join: [ {{ cn: name }} ]
        flow:
          dn: '"cn=" .. dn_escape(name) .. ",{groups}"'
          cn: name
          member: members
safety:
  max_deletes: 100
  max_delete_percent: 0
"""


def test_csv_to_openldap(slapd_factory, tmp_path):
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(BIG)
    # (';' separates values in the CSV connector: not in these)
    people[7]["sn"] = 'Smith, Jr.+"<Q>"=*()#'
    people[8]["title"] = HOSTILE[6]
    # "ring a" and "ring b" contain each other: created without each other
    # by the first export, completed by the next
    teams = {"everyone": [p["id"] for p in people], "few": ["E00001", "E00002"],
             "nested, team": ["few", "E00003"], "ring a": ["E00004", "ring b"],
             "ring b": ["E00005", "ring a"]}
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv(teams))
    env.write("idsync.yaml", CSV_TO_OL.format(source=CSV_SOURCE.format(),
                                              target=target_ldap_connector(dst),
                                              people=PEOPLE, groups=GROUPS))
    env.run("cycle", "--full", expect=0)
    ring_a, ring_b = "cn=ring a,%s" % GROUPS, "cn=ring b,%s" % GROUPS
    assert group_members(dst, ring_a) == {norm("uid=e00004,%s" % PEOPLE)}
    assert group_members(dst, ring_b) == {norm("uid=e00005,%s" % PEOPLE)}
    got = people_of(dst, PEOPLE)
    assert len(got) == BIG
    assert got["e00007"]["sn"] == ['Smith, Jr.+"<Q>"=*()#']
    assert got["e00008"]["title"] == [HOSTILE[6]]
    assert len(group_members(dst, "cn=everyone,%s" % GROUPS)) == BIG
    assert norm("cn=few,%s" % GROUPS) in group_members(dst, "cn=nested\\, team,%s" % GROUPS)

    people[1]["title"] = "Director"
    people[2]["mail"] = "moved@example.org"
    gone = people.pop(3)
    people.append({"id": "E99999", "given": "New", "sn": "Hire", "mail": "new@example.org",
                   "title": "Intern"})
    teams["few"] = ["E00001", "E99999"]
    teams["everyone"] = [p["id"] for p in people]
    teams["nested, team"] = ["few"]
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv(teams))
    env.run("cycle", expect=0)
    got = people_of(dst, PEOPLE)
    assert got["e00001"]["title"] == ["Director"]
    assert got["e00002"]["mail"] == ["moved@example.org"]
    assert gone["id"].lower() not in got and "e99999" in got
    assert group_members(dst, "cn=few,%s" % GROUPS) == {norm("uid=e00001,%s" % PEOPLE),
                                                        norm("uid=e99999,%s" % PEOPLE)}
    assert group_members(dst, ring_a) == {norm("uid=e00004,%s" % PEOPLE), norm(ring_b)}
    assert group_members(dst, ring_b) == {norm("uid=e00005,%s" % PEOPLE), norm(ring_a)}
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_first_cycle_against_a_filled_openldap(slapd_factory, tmp_path):
    """No outbound join rule, a directory that already holds people: an
    entry at the DN of a create that is someone else (another mail and
    employee number) is a dn-conflict in the dry run, naming what differs,
    and nothing is sent for it (before: a failed add every cycle); an entry
    that holds every value is joined. With the store lost, the next full
    cycle joins every entry idsync created and creates nothing again."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(6)
    dst.add("uid=e00001," + PEOPLE, {
        "objectClass": ["inetOrgPerson"], "uid": ["e00001"], "cn": ["Somebody Else"],
        "sn": ["Else"], "mail": ["else@example.org"], "employeeNumber": ["X1"]})
    p2 = people[2]
    dst.add("uid=e00002," + PEOPLE, {
        "objectClass": ["inetOrgPerson"], "uid": ["e00002"], "employeeNumber": [p2["id"]],
        "cn": ["%s %s" % (p2["given"], p2["sn"])], "sn": [p2["sn"]],
        "givenName": [p2["given"]], "mail": [p2["mail"]], "title": [p2["title"]]})
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    cfg = CSV_TO_OL.format(source=CSV_SOURCE.format(), target=target_ldap_connector(dst),
                           people=PEOPLE, groups=GROUPS)
    cfg = cfg.replace("        join: [ { employeeNumber: employeeId } ]\n", "")
    cfg = cfg.replace("        anchor_carrier: employeeNumber\n", "")
    assert "employeeNumber: employeeId }" not in cfg
    env.write("idsync.yaml", cfg)

    p = env.run("cycle", "--full", "--dry-run", expect=1)
    errs = env.json("errors")["errors"]
    assert sorted(e["code"] for e in errs) == ["dn-conflict", "reference-unresolved"], p.stdout
    msg = next(e for e in errs if e["code"] == "dn-conflict")["message"]
    assert msg.startswith("creating uid=e00001,%s: an entry is already at that DN in dst" % PEOPLE)
    assert "(from hr E00001)" in msg and "not this one (its " in msg, msg
    p = env.run("cycle", "--full", expect=1)
    assert dst.get("uid=e00001," + PEOPLE, ["mail"])["mail"] == ["else@example.org"]
    got = people_of(dst, PEOPLE)
    assert sorted(got) == ["e00000", "e00001", "e00002", "e00003", "e00004", "e00005"]
    sync = next(r for r in last_runs(env, 10) if r["step"] == "full-sync")
    assert counter(sync, "joined") == 1, sync  # e00002
    members = {m.lower() for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert ("uid=e00001," + PEOPLE).lower() not in members and len(members) == 5, members
    p = env.run("export", "dst", expect=0)  # nothing failing is left pending

    # the store lost: every entry is found again, nothing is created twice
    remove_store(env)
    env.run("cycle", "--full", expect=1)  # e00001 is still someone else
    sync = next(r for r in last_runs(env, 10) if r["step"] == "full-sync")
    assert counter(sync, "joined") == 6, sync  # 5 people and the group
    assert counter(sync, "provisioned") == 0, sync
    assert sorted(people_of(dst, PEOPLE)) == sorted(got)


def hr_to_openldap_with_dn(env, dst, people, dn_flow):
    """CSV_TO_OL with the people's dn flow replaced by dn_flow; writes the
    HR files (one team of everyone) and returns the configuration."""
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    cfg = CSV_TO_OL.format(source=CSV_SOURCE.format(), target=target_ldap_connector(dst),
                           people=PEOPLE, groups=GROUPS)
    old = "          dn: '\"uid=\" .. dn_escape(lower(employeeId)) .. \",%s\"'\n" % PEOPLE
    assert old in cfg
    return cfg.replace(old, dn_flow)


def test_namesakes_get_the_next_dn_the_flow_offers(slapd_factory, tmp_path):
    """People named by cn, with a dn flow that gives a second DN to try: a
    new hire with a colleague's name gets "cn=NAME (ID)", with cn following
    the name (slapd refuses an entry whose RDN value is not in it); the
    account keeps that DN when the colleague leaves, and a new name renames
    it to the first DN again."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(4)
    env.write("idsync.yaml", hr_to_openldap_with_dn(env, dst, people, """          dn: |
            local name = givenName .. " " .. sn
            return { "cn=" .. dn_escape(name) .. ",%s",
                     "cn=" .. dn_escape(name .. " (" .. employeeId .. ")") .. ",%s" }
""" % (PEOPLE, PEOPLE)))
    env.run("cycle", "--full", expect=0)

    twin = dict(people[1], id="E00099", mail="twin@example.org")
    people.append(twin)
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    env.run("cycle", expect=0)
    first = "cn=Given1 Family1,%s" % PEOPLE
    second = "cn=Given1 Family1 (E00099),%s" % PEOPLE
    assert dst.get(first, ["employeeNumber"])["employeeNumber"] == ["E00001"]
    got = dst.get(second, ["employeeNumber", "cn", "mail"])
    assert got["employeeNumber"] == ["E00099"] and got["cn"] == ["Given1 Family1 (E00099)"]
    members = {m.lower() for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert second.lower() in members and first.lower() in members
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0

    # the colleague leaves: the account keeps its DN
    people.pop(1)
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    env.run("cycle", "--full", expect=0)
    assert dst.get(first) is None
    assert dst.get(second, ["employeeNumber"])["employeeNumber"] == ["E00099"]
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # a new name: the first DN the flow gives
    people[-1]["sn"] = "Newname"
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    assert dst.get(second) is None
    got = dst.get("cn=Given1 Newname,%s" % PEOPLE, ["employeeNumber", "cn"])
    assert got["employeeNumber"] == ["E00099"] and got["cn"] == ["Given1 Newname"]
    members = {m.lower() for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert ("cn=Given1 Newname,%s" % PEOPLE).lower() in members and len(members) == 4
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_everyone_moved_to_another_ou(slapd_factory, tmp_path):
    """An OU reorganisation: the dn flow and the type's base both move from
    ou=People to ou=Staff. The dry run shows every rename and the group with
    its members' new DNs in and old DNs out, as many after as before (before,
    it showed the deletes alone, "member: 12 -> 0 values", as if the group
    were emptied); the cycle moves everyone and the group follows, its
    confirming import reading the new base in full once the moves are sent;
    the next full cycle has nothing to do."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(12)
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    staff = "ou=Staff," + SUFFIX
    moved = cfg.replace(",%s\"'" % PEOPLE, ",%s\"'" % staff).replace(
        "base: %s\n" % PEOPLE, "base: %s\n" % staff)
    assert moved.count("ou=Staff") == 2
    env.write("idsync.yaml", moved)

    dry = env.run("cycle", "--dry-run", expect=0).stdout
    assert dry.count("rename -> uid=") == 12, dry
    group = dry[dry.index("modify group cn=all"):]
    assert "member: 12 -> 12 values" in group and "-> 0 values" not in group, group
    assert "+ uid=e00000,ou=Staff,dc=example,dc=org" in group, group
    assert "- uid=e00000,ou=People,dc=example,dc=org" in group, group
    assert sorted(people_of(dst, PEOPLE)) == ["e%05d" % i for i in range(12)]

    env.run("cycle", expect=0)
    # the new base is read in full after the moves were sent, not before
    # (before them it holds nobody: every entry would look deleted)
    reads = [(r["step"], r["counters"]) for r in reversed(last_runs(env, 6))
             if r["connector"] == "dst" and r["step"].endswith("-import")]
    assert [step for step, _ in reads] == ["delta-import", "full-import"], reads
    assert reads[1][1]["staged-delete"] == 0 and reads[1][1]["read"] == 13, reads
    assert people_of(dst, PEOPLE) == {}
    assert sorted(people_of(dst, staff)) == ["e%05d" % i for i in range(12)]
    members = {norm(m) for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert members == {norm("uid=e%05d,%s" % (i, staff)) for i in range(12)}, members
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_manager_references_follow_renames_and_leavers(slapd_factory, tmp_path):
    """An HR export with a manager column (the manager's employee id) as a
    reference, flowed to slapd's manager as a DN: a manager listed after
    the reports resolves in the same cycle, the CEO who manages herself gets
    her own DN one cycle later (it does not exist before her create), a
    manager's rename reaches the reports' manager values (slapd has no
    refint here), and a manager who leaves is taken out of the reports'
    manager and reported as an unresolved reference until HR names a new
    one."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(6)
    mgr = {0: "E00000", 1: "E00005", 2: "E00005", 3: "E00001", 4: "E00001", 5: "E00000"}

    def write_people():
        rows = ["employeeId,givenName,sn,mail,title,manager"]
        for i, p in enumerate(people):
            rows.append('"%s","%s","%s","%s","%s","%s"' % (
                p["id"], p["given"], p["sn"], p["mail"], p["title"], mgr.get(int(p["id"][1:]), "")))
        env.write("hr/people.csv", "\r\n".join(rows) + "\r\n")

    def managers():
        return {uid: [norm(m) for m in a.get("manager", [])]
                for uid, a in people_of(dst, PEOPLE).items()}

    def dn(i, sn=None):
        return norm("cn=Given%d %s,%s" % (i, sn or "Family%d" % i, PEOPLE))

    write_people()
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    src = CSV_SOURCE.format().replace(
        "attributes: [employeeId, givenName, sn, mail, title]",
        "attributes: [employeeId, givenName, sn, mail, title, manager]\n"
        "        references: { manager: [person] }", 1)
    tgt = target_ldap_connector(dst).replace(
        "employeeNumber, description]",
        "employeeNumber, description, manager]\n        references: { manager: [user] }", 1)
    cfg = CSV_TO_OL.format(source=src, target=tgt, people=PEOPLE, groups=GROUPS)
    cfg = cfg.replace("mail: mail, title: title }", "mail: mail, title: title, manager: manager }", 1)
    cfg = cfg.replace("          title: title\n", "          title: title\n          manager: manager\n", 1)
    cfg = cfg.replace("dn: '\"uid=\" .. dn_escape(lower(employeeId))",
                      "dn: '\"cn=\" .. dn_escape(givenName .. \" \" .. sn)", 1)
    assert "manager: manager }" in cfg and "          manager: manager\n" in cfg
    env.write("idsync.yaml", cfg)

    env.run("cycle", "--full", expect=0)
    got = managers()
    assert got["e00001"] == [dn(5)] and got["e00003"] == [dn(1)] and got["e00005"] == [dn(0)], got
    assert got["e00000"] == []
    env.run("cycle", expect=0)
    assert managers()["e00000"] == [dn(0)]

    people[1]["sn"] = "Married"
    write_people()
    env.run("cycle", expect=0)
    got = managers()
    assert got["e00003"] == [dn(1, "Married")] and got["e00004"] == [dn(1, "Married")], got

    del people[5]
    write_people()
    env.run("cycle", expect=1)
    got = managers()
    assert "e00005" not in got and got["e00001"] == [] and got["e00002"] == [], got
    errs = [e for e in env.json("errors")["errors"] if e["attr"] == "manager"]
    assert sorted(e["anchor"] for e in errs) == ["E00001", "E00002"], errs
    assert all("E00005" in e["message"] for e in errs), errs

    mgr[1] = mgr[2] = "E00000"
    write_people()
    env.run("cycle", expect=0)
    got = managers()
    assert got["e00001"] == [dn(0)] and got["e00002"] == [dn(0)], got
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


@pytest.mark.parametrize("refint", [True, False], ids=["refint", "no-refint"])
def test_entry_deleted_by_hand_comes_back_with_its_groups(slapd_factory, tmp_path, refint):
    """Someone deletes a managed account and edits another by hand. The next
    delta cycle creates the account again, in the group it was in, and puts
    the title back; a full cycle then has nothing to do. With refint, slapd
    takes the deleted DN out of the group itself, after the delete and
    unseen by syncrepl: before, idsync still believed the group held it and
    the account stayed out of the group until a full import. Without refint
    the group keeps the DN, and adding it back is absorbed."""
    dst = slapd_factory("dst", refint=refint)
    env = Env(tmp_path / "work")
    people = hr_people(5)
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    everyone = {norm("uid=e%05d,%s" % (i, PEOPLE)) for i in range(5)}
    gone = "uid=e00001," + PEOPLE
    old_uuid = dst.get(gone, ["entryUUID"])["entryUUID"]
    dst.delete(gone)
    dst.modify_ldif("dn: uid=e00002,%s\nchangetype: modify\nreplace: title\ntitle: Hacked\n"
                    % PEOPLE)
    if refint:
        wait_for(lambda: len(dst.get("cn=all," + GROUPS, ["member"])["member"]) == 4, 10,
                 "refint to take the deleted DN out of the group")

    env.run("cycle", expect=0)
    got = people_of(dst, PEOPLE)
    assert sorted(got) == ["e%05d" % i for i in range(5)] and got["e00002"]["title"] == ["Engineer"]
    assert dst.get(gone, ["entryUUID"])["entryUUID"] != old_uuid
    members = {norm(m) for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert members == everyone, members
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.json("errors")["errors"] == []


def test_empty_groups_get_a_stand_in_member(slapd_factory, tmp_path):
    """groupOfNames requires a member. An empty HR team could not be created
    and a team whose last member left could not be emptied: slapd refused
    it at every cycle (and the leaver stayed in the group); the error now
    says what to configure. With empty_member, the stand-in DN is written
    when a group has no member, taken out when members come, and never read
    as a member."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(3)
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    env.write("idsync.yaml", cfg)
    env.write("hr/teams.csv", teams_csv({"all": ["E00000", "E00001", "E00002"], "empty": [],
                                         "one": ["E00001"]}))
    env.run("cycle", "--full", expect=1)
    errs = env.json("errors")["errors"]
    assert [e["dn"] for e in errs] == ["cn=empty," + GROUPS], errs
    assert "empty_member" in errs[0]["message"], errs

    stand_in = "cn=empty-membership-placeholder"
    old = "        object_classes: [groupOfNames]\n"
    assert old in cfg
    env.write("idsync.yaml", cfg.replace(old, old + "        empty_member: not a dn\n", 1))
    p = env.run("check")
    assert p.returncode != 0 and "objects.group.empty_member: not a DN" in p.stdout + p.stderr, p
    env.write("idsync.yaml", cfg.replace(old, old + "        empty_member: %s\n" % stand_in, 1))
    env.run("cycle", expect=0)
    assert dst.get("cn=empty," + GROUPS, ["member"])["member"] == [stand_in]

    env.write("hr/teams.csv", teams_csv({"all": ["E00000", "E00001", "E00002"], "empty": [],
                                         "one": []}))
    env.run("cycle", expect=0)
    assert dst.get("cn=one," + GROUPS, ["member"])["member"] == [stand_in]
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    shown = env.json("show", "cs", "dst", "cn=one," + GROUPS)
    assert stand_in not in json.dumps(shown), shown

    env.write("hr/teams.csv", teams_csv({"all": ["E00000", "E00001", "E00002"],
                                         "empty": ["E00002"], "one": ["E00000", "E00001"]}))
    env.run("cycle", expect=0)
    assert {norm(m) for m in dst.get("cn=one," + GROUPS, ["member"])["member"]} == {
        norm("uid=e00000," + PEOPLE), norm("uid=e00001," + PEOPLE)}
    assert dst.get("cn=empty," + GROUPS, ["member"])["member"] == ["uid=e00002," + PEOPLE]
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_leavers_are_disabled_then_moved_to_their_ou(slapd_factory, tmp_path):
    """deprovision: disable with disable_move_to: leavers' accounts are
    disabled by one export (through the delete threshold, as disables) and
    moved to ou=Leavers by the next, which the threshold does not count
    again; the disable never waits for the move. A rehire brings the
    account back to ou=People, enabled. A container the object type does
    not read is refused at load."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(4)
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    leavers = "ou=Leavers," + SUFFIX
    cfg = cfg.replace("        base: %s\n" % PEOPLE, "        base: %s\n" % SUFFIX, 1)
    old = "        deprovision: delete\n        anchor_carrier: employeeNumber\n"
    assert old in cfg and "  max_deletes: 100\n" in cfg
    cfg = cfg.replace(old, "        deprovision: disable\n        disable_attribute: description\n"
                      "        disable_value: disabled\n        disable_move_to: %s\n"
                      "        anchor_carrier: employeeNumber\n" % leavers, 1)
    cfg = cfg.replace("  max_deletes: 100\n", "  max_deletes: 1\n", 1)
    env.write("idsync.yaml", cfg.replace("disable_move_to: " + leavers,
                                         "disable_move_to: ou=Leavers,dc=other", 1))
    p = env.run("check", expect=3)
    assert "disable_move_to: outside what idsync reads of dst/user" in p.stderr, p.stderr
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)

    def write(ps):
        env.write("hr/people.csv", people_csv(ps))
        env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in ps]}))

    write([people[0], people[3]])
    env.run("cycle", expect=2)  # two disables: over max_deletes 1
    env.run("export", "dst", "--allow-deletes", "2", expect=0)
    for i in (1, 2):
        got = dst.get("uid=e%05d,%s" % (i, PEOPLE), ["description"])
        assert got["description"] == ["disabled"], got
    env.run("cycle", expect=0)  # the moves: not deletes
    for i in (1, 2):
        assert dst.get("uid=e%05d,%s" % (i, PEOPLE)) is None
        got = dst.get("uid=e%05d,%s" % (i, leavers), ["description"])
        assert got["description"] == ["disabled"], got
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0

    write([people[0], people[1], people[3]])
    env.run("cycle", expect=0)
    assert dst.get("uid=e00001," + leavers) is None
    back = dst.get("uid=e00001," + PEOPLE, ["description", "employeeNumber"])
    assert back is not None and "description" not in back and back["employeeNumber"] == ["E00001"]
    assert dst.get("uid=e00002," + leavers) is not None
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_dn_outside_the_base_of_its_type_is_refused(slapd_factory, tmp_path):
    """A dn flow that puts contractors in ou=Contractors while the user type
    reads ou=People: idsync would create the entry (and the OU, with
    create_parents) and never read it back, and each full import would find
    it gone. The sync refuses the create and the move instead
    (dn-out-of-scope, naming the base); everyone else goes out."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(4)
    people[2]["title"] = "Contractor"
    env.write("idsync.yaml", hr_to_openldap_with_dn(env, dst, people, """          dn: |
            local ou = title == "Contractor" and "ou=Contractors,%s" or "%s"
            return "uid=" .. dn_escape(lower(employeeId)) .. "," .. ou
""" % (SUFFIX, PEOPLE)))
    env.run("cycle", "--full", expect=1)
    errs = env.json("errors")["errors"]
    out = [e for e in errs if e["code"] == "dn-out-of-scope"]
    assert len(out) == 1, errs
    msg = out[0]["message"]
    assert msg.startswith("creating uid=e00002,ou=Contractors,%s: that DN is outside what idsync "
                          "reads of dst/user (base %s, scope sub)" % (SUFFIX, PEOPLE)), msg
    assert "(from hr E00002)" in msg, msg
    assert sorted(people_of(dst, PEOPLE)) == ["e00000", "e00001", "e00003"]
    assert dst.get("ou=Contractors," + SUFFIX) is None

    # a move out of the base is refused the same way: the entry stays
    people[1]["title"] = "Contractor"
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=1)
    msg = [e for e in env.json("errors")["errors"] if e["code"] == "dn-out-of-scope"][0]["message"]
    assert msg.startswith("renaming uid=e00001,%s to uid=e00001,ou=Contractors," % PEOPLE), msg
    assert dst.get("uid=e00001," + PEOPLE, ["title"])["title"] == ["Engineer"]
    assert dst.get("ou=Contractors," + SUFFIX) is None


def test_created_entry_the_filter_does_not_select_is_kept_and_reported(slapd_factory, tmp_path):
    """The user type reads (&(objectClass=inetOrgPerson)(title=*)), and a
    person without a title is created without one: no import reads that
    entry back. It is reported (exported-change-not-reimported, naming the
    filter as the likely cause) and kept as created; before, each import
    took it for deleted, and each cycle disconnected it and sent its create
    again. Once the filter is fixed, the next full import confirms it."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(4)
    people[2]["title"] = ""
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    cfg = CSV_TO_OL.format(source=CSV_SOURCE.format(), target=target_ldap_connector(dst),
                           people=PEOPLE, groups=GROUPS)
    narrow = "filter: (&(objectClass=inetOrgPerson)(title=*))"
    cfg = cfg.replace("filter: (objectClass=inetOrgPerson)", narrow, 1)
    assert narrow in cfg
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=1)
    errs = [e for e in env.json("errors")["errors"]
            if e["code"] == "exported-change-not-reimported"]
    assert len(errs) == 1 and errs[0]["dn"].lower() == ("uid=e00002," + PEOPLE).lower(), errs
    assert "filter do not select it" in errs[0]["message"], errs
    for _ in range(2):
        env.run("cycle", "--full", expect=1)
        runs = last_runs(env, 8)
        sync = next(r for r in runs if r["step"] == "full-sync")
        assert counter(sync, "provisioned") == 0 and counter(sync, "disconnected") == 0, sync
        assert exports_of_last_cycle(env) == 0
    assert sorted(people_of(dst, PEOPLE)) == ["e00000", "e00001", "e00002", "e00003"]

    env.write("idsync.yaml", cfg.replace(narrow, "filter: (objectClass=inetOrgPerson)"))
    env.run("cycle", "--full", expect=0)
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_object_classes_flow_without_churn(slapd_factory, tmp_path):
    """An objectClass flow into slapd. With objectClass not among the
    type's attributes it is set by the create only (before: replaced at every
    sync, an export per person per cycle reported as success). Read, a class
    added to the flow later is added to the existing entries, and none is
    taken away."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(3)
    flow = "          employeeNumber: employeeId\n          objectClass: '{ \"inetOrgPerson\" }'\n"
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE).replace("          employeeNumber: employeeId\n", flow, 1)
    assert flow in cfg
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    for _ in range(2):
        env.run("cycle", expect=0)
        assert exports_of_last_cycle(env) == 0
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0

    # read back, and an auxiliary class added to the flow
    cfg = cfg.replace("attributes: [uid, cn, sn, givenName, mail, title, employeeNumber, description]",
                      "attributes: [uid, cn, sn, givenName, mail, title, employeeNumber, description, "
                      "objectClass]")
    cfg = cfg.replace(flow, flow.replace('"inetOrgPerson" }', '"inetOrgPerson", "extensibleObject" }'))
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    got = dst.get("uid=e00001," + PEOPLE, ["objectClass"])["objectClass"]
    assert sorted(v.lower() for v in got) == ["extensibleobject", "inetorgperson"], got
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_empty_string_from_a_flow_is_no_value(slapd_factory, tmp_path):
    """`title or ""`, the Lua way to say "nothing": an empty string is no
    value. Before, slapd refused the create ("description: value #0 invalid
    per syntax") at every export, and the group of everyone waited for that
    person and was never created."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(3)
    people[1]["title"] = ""
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    flow = "          employeeNumber: employeeId\n          description: 'title or \"\"'\n"
    cfg = cfg.replace("          employeeNumber: employeeId\n", flow, 1)
    assert flow in cfg
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    got = people_of(dst, PEOPLE)
    assert sorted(got) == ["e00000", "e00001", "e00002"]
    assert "description" not in got["e00001"] and got["e00002"]["description"] == ["Engineer"]
    assert len(dst.get("cn=all," + GROUPS, ["member"])["member"]) == 3
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_member_that_cannot_be_created_does_not_hold_its_group_back(slapd_factory, tmp_path):
    """One person's create fails (a mail with an umlaut: slapd's mail is
    IA5String): the group of everyone is created with the others (before:
    it waited for that one member at every export and never existed), and
    gets the member once the create succeeds."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(4)
    people[2]["mail"] = "j\u00fcrgen@example.org"
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    env.write("idsync.yaml", cfg)
    # a group whose only member is that person cannot exist in slapd (a
    # groupOfNames needs a member): it waits, quietly
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people], "solo": ["E00002"]}))
    env.run("cycle", "--full", expect=1)
    errs = env.json("errors")["errors"]
    assert [e["code"] for e in errs] == ["export-failed"], errs
    assert "uid=e00002" in errs[0]["dn"] and "mail" in errs[0]["message"], errs
    members = {m.lower() for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert members == {("uid=e0000%d,%s" % (i, PEOPLE)).lower() for i in (0, 1, 3)}, members
    assert dst.get("cn=solo," + GROUPS) is None
    env.run("cycle", expect=1)  # the create is tried again; the group waits quietly
    assert [e["code"] for e in env.json("errors")["errors"]] == ["export-failed"]

    people[2]["mail"] = "juergen@example.org"
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    env.run("cycle", expect=0)
    members = {m.lower() for m in dst.get("cn=all," + GROUPS, ["member"])["member"]}
    assert len(members) == 4 and ("uid=e00002," + PEOPLE).lower() in members, members
    assert dst.get("cn=solo," + GROUPS, ["member"])["member"] == ["uid=e00002," + PEOPLE]
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_value_given_twice_by_a_flow_is_sent_once(slapd_factory, tmp_path):
    """`{ title, title, upper(title) }`: slapd compares title ignoring case
    and refuses an entry that names a value twice ("value #0 provided more
    than once", every person's create failed at every export); the first of
    the repeated values is sent."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(3)
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    old = "          title: title\n"
    assert old in cfg
    env.write("idsync.yaml", cfg.replace(old, "          title: '{ title, title, upper(title) }'\n", 1))
    env.run("cycle", "--full", expect=0)
    got = people_of(dst, PEOPLE)
    assert sorted(got) == ["e00000", "e00001", "e00002"] and got["e00001"]["title"] == ["Engineer"]
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_dn_valued_attribute_is_compared_as_a_dn(slapd_factory, tmp_path):
    """A flow into a DN-syntax attribute that is not a reference (seeAlso),
    written in a form slapd rewrites ("CN=Engineer, OU=Roles" is stored as
    "cn=Engineer,ou=Roles"). Before, the confirming import reported every
    such value as exported-change-not-reimported and each cycle sent it
    again; now the values are compared as DNs (the LDAP connector reads which
    attributes hold DNs from the server's schema), and a real change still
    goes out."""
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    people = hr_people(3)
    cfg = hr_to_openldap_with_dn(env, dst, people, """          dn: '"uid=" .. dn_escape(lower(employeeId)) .. ",%s"'
""" % PEOPLE)
    cfg = cfg.replace("employeeNumber, description]", "employeeNumber, description, seeAlso]", 1)
    flow = ("          seeAlso: '{ \"CN=\" .. title .. \", OU=Roles, dc=example,dc=org\", "
            "\"CN=All, OU=Roles,DC=example,DC=org\" }'\n")
    cfg = cfg.replace("          title: title\n", "          title: title\n" + flow, 1)
    assert flow in cfg
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    got = dst.get("uid=e00001," + PEOPLE, ["seeAlso"])["seeAlso"]
    assert sorted(norm(v) for v in got) == [norm("cn=All,ou=Roles," + SUFFIX),
                                           norm("cn=Engineer,ou=Roles," + SUFFIX)], got
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.json("errors")["errors"] == []

    people[1]["title"] = "Director"
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    got = dst.get("uid=e00001," + PEOPLE, ["seeAlso"])["seeAlso"]
    assert sorted(norm(v) for v in got) == [norm("cn=All,ou=Roles," + SUFFIX),
                                           norm("cn=Director,ou=Roles," + SUFFIX)], got
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


CSV_TO_AD = """store: sqlite:idsync.db
connectors:
{source}
  ad:
    type: ldap
    url: {url}
    bind_dn: Administrator@ids.test
    password_file: {pw}
    base: "{sync}"
    create_parents: true
    objects:
      user:
        base: "OU=Imported,{sync}"
        filter: (&(objectClass=user)(objectCategory=person))
        attributes: [objectGUID, sAMAccountName, userPrincipalName, givenName, sn, mail, title,
                     employeeID, userAccountControl, objectClass]
        object_classes: [user]
      group:
        base: "OU=ImportedGroups,{sync}"
        filter: (objectClass=group)
        attributes: [objectGUID, cn, sAMAccountName, member]
        object_classes: [group]
        references: {{ member: [user, group] }}
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ {{ employeeId: employeeId }} ]
        flow: {{ employeeId: employeeId, givenName: givenName, sn: sn, mail: mail, title: title }}
    to:
      - connector: ad
        object: user
        provision: true
        deprovision: disable
        disable_attribute: userAccountControl
        disable_value: "2"
        anchor_carrier: employeeID
        join: [ {{ employeeID: employeeId }} ]
        flow:
          dn: '"CN=" .. dn_escape(givenName .. " " .. sn) .. ",OU=Imported,{sync}"'
          # AD reads back top, person, organizationalPerson, user: none of
          # them may be taken away
          objectClass: '{{ "user" }}'
          employeeID: employeeId
          sAMAccountName: lower(employeeId)
          userPrincipalName: 'lower(employeeId) .. "@ids.test"'
          givenName: givenName
          sn: sn
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
      - connector: ad
        object: group
        provision: true
        deprovision: delete
        join: [ {{ cn: name }} ]
        flow:
          dn: '"CN=" .. dn_escape(name) .. ",OU=ImportedGroups,{sync}"'
          cn: name
          sAMAccountName: 'replace(name, " ", "_")'
          member: members
safety:
  max_deletes: 100
  max_delete_percent: 0
"""


def test_csv_to_ad(samba_dc, tmp_path):
    dc = samba_dc
    env = Env(tmp_path / "work")
    people = hr_people(40)
    people[4]["sn"] = "O'Brien, Jr."
    # AD allows groups nested in a cycle: created without each other by the
    # first export, completed by the next
    teams = {"all staff": [p["id"] for p in people], "few": ["E00001", "E00002"],
             "outer": ["few", "E00003"], "ring a": ["E00006", "ring b"],
             "ring b": ["E00007", "ring a"]}
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv(teams))
    env.write("idsync.yaml", CSV_TO_AD.format(source=CSV_SOURCE.format(), url=dc.url,
                                              pw=dc.password_file, sync=SYNC_OU))
    env.run("cycle", "--full", expect=0)
    ring_a = "CN=ring a,OU=ImportedGroups," + SYNC_OU
    ring_b = "CN=ring b,OU=ImportedGroups," + SYNC_OU
    assert len(dc.get(ring_a, ["member"])["member"]) == 1
    env.run("cycle", expect=0)
    assert {m.lower() for m in dc.get(ring_a, ["member"])["member"]} == {
        ("CN=Given6 Family6,OU=Imported," + SYNC_OU).lower(), ring_b.lower()}
    assert {m.lower() for m in dc.get(ring_b, ["member"])["member"]} == {
        ("CN=Given7 Family7,OU=Imported," + SYNC_OU).lower(), ring_a.lower()}
    users = {a["employeeID"][0]: (dn, a) for dn, a in dc.search(
        "OU=Imported," + SYNC_OU, "(objectClass=user)", ["employeeID", "sn", "mail",
                                                         "userAccountControl"])}
    assert len(users) == 40
    assert users["E00004"][1]["sn"] == ["O'Brien, Jr."]
    outer = dc.get("CN=outer,OU=ImportedGroups," + SYNC_OU, ["member"])
    assert len(outer["member"]) == 2

    # leaver: deprovision disable sets ACCOUNTDISABLE, other bits kept
    gone = people.pop(5)
    people[0]["title"] = "Boss"
    teams["all staff"] = [p["id"] for p in people]
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv(teams))
    env.run("cycle", expect=0)
    dn, a = users[gone["id"]]
    uac = int(dc.get(dn, ["userAccountControl"])["userAccountControl"][0])
    assert uac & 2
    assert uac & ~2 == int(a["userAccountControl"][0]) & ~2
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    # the export records the userAccountControl it wrote (514), not the
    # disable bit it was given ("2"): a full import confirms it, no error
    env.run("import", "ad", "--full", expect=0)

    # rehired: joined again by employeeID and enabled, the other bits kept
    people.append(gone)
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    uac = int(dc.get(dn, ["userAccountControl"])["userAccountControl"][0])
    assert not uac & 2 and uac == int(a["userAccountControl"][0]) & ~2, uac
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # a member of "few" renamed: AD moves its links itself; the groups'
    # own change (old DN out, new DN in) must not fail the export
    people[1]["given"] = "Renamed"
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    new_dn = "CN=Renamed Family1,OU=Imported," + SYNC_OU
    assert dc.get(new_dn, ["employeeID"]) is not None
    few = {m.lower() for m in dc.get("CN=few,OU=ImportedGroups," + SYNC_OU, ["member"])["member"]}
    assert new_dn.lower() in few and len(few) == 2, few
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # renamed and taken out of "few" in one cycle: AD rewrites the link at
    # the rename, so the removal must name the new DN too
    people[2]["given"] = "Moved"
    teams["few"] = ["E00001"]
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv(teams))
    env.run("cycle", expect=0)
    few = {m.lower() for m in dc.get("CN=few,OU=ImportedGroups," + SYNC_OU, ["member"])["member"]}
    assert few == {new_dn.lower()}, few
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # renamed and put into "few" in one cycle: the group names the new DN
    people[3]["given"] = "Joined"
    teams["few"] = ["E00001", "E00003"]
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv(teams))
    env.run("cycle", expect=0)
    few = {m.lower() for m in dc.get("CN=few,OU=ImportedGroups," + SYNC_OU, ["member"])["member"]}
    assert few == {new_dn.lower(), ("CN=Joined Family3,OU=Imported," + SYNC_OU).lower()}, few
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # a new hire with the name of a colleague: the DN rule gives the same
    # CN; the colleague keeps the account, the new hire is a dn-conflict
    # naming both, and the rest of the cycle goes out
    twin = dict(people[8], id="E00099", mail="twin@example.org")
    people.append(twin)
    people[9]["title"] = "Architect"
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=1)
    twin_dn = "CN=%s %s,OU=Imported,%s" % (twin["given"], twin["sn"], SYNC_OU)
    assert dc.get(twin_dn, ["employeeID"])["employeeID"] == [people[8]["id"]]
    assert dc.search("OU=Imported," + SYNC_OU, "(employeeID=E00099)", ["cn"]) == []
    assert dc.get("CN=Given10 Family10,OU=Imported," + SYNC_OU, ["title"])["title"] == [
        "Architect"]
    errs = env.json("errors")
    errs = errs["errors"] if isinstance(errs, dict) else errs
    assert [e["code"] for e in errs] == ["dn-conflict"], errs
    assert "(from hr %s)" % people[8]["id"] in errs[0]["message"]
    assert "(from hr E00099)" in errs[0]["message"]

    # a dn flow that offers a second DN: the new hire gets it at the next
    # full cycle (after a rule change); the colleague keeps the first
    cfg = env.read("idsync.yaml")
    old = """          dn: '"CN=" .. dn_escape(givenName .. " " .. sn) .. ",OU=Imported,%s"'\n""" % SYNC_OU
    assert old in cfg
    env.write("idsync.yaml", cfg.replace(old, """          dn: |
            local name = givenName .. " " .. sn
            return { "CN=" .. dn_escape(name) .. ",OU=Imported,%s",
                     "CN=" .. dn_escape(name .. " (" .. employeeId .. ")") .. ",OU=Imported,%s" }
""" % (SYNC_OU, SYNC_OU)))
    env.run("cycle", "--full", expect=0)
    got = dc.get("CN=%s %s (E00099),OU=Imported,%s" % (twin["given"], twin["sn"], SYNC_OU),
                 ["employeeID", "cn", "mail"])
    assert got["employeeID"] == ["E00099"] and got["mail"] == ["twin@example.org"], got
    assert dc.get(twin_dn, ["employeeID"])["employeeID"] == [people[8]["id"]]
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_hr_end_date_sets_ad_account_expiry(samba_dc, tmp_path):
    """An HR export's leaving date (D.M.YYYY) becomes AD's accountExpires
    (a FILETIME, the moment after the last day); no date means never; a
    date that is not one is an error on that person only."""
    dc = samba_dc
    env = Env(tmp_path / "work")
    source = CSV_SOURCE.format().replace("attributes: [employeeId, givenName, sn, mail, title]",
                                         "attributes: [employeeId, givenName, sn, mail, title, "
                                         "endDate]")
    cfg = CSV_TO_AD.format(source=source, url=dc.url, pw=dc.password_file, sync=SYNC_OU)
    cfg = cfg.replace("OU=Imported,", "OU=Dated,").replace("OU=ImportedGroups,", "OU=DatedGroups,")
    cfg = cfg.replace("mail: mail, title: title }}", "mail: mail, title: title, endDate: endDate }}")
    cfg = cfg.replace("mail: mail, title: title }", "mail: mail, title: title, endDate: endDate }")
    old = "employeeID, userAccountControl, objectClass]"
    assert old in cfg
    cfg = cfg.replace(old, "employeeID, userAccountControl, objectClass, accountExpires]")
    cfg = cfg.replace("          title: title\n", "          title: title\n"
                      "          accountExpires: 'endDate and filetime(parse_time(endDate, "
                      "\"D.M.YYYY\") + 86400) or \"9223372036854775807\"'\n", 1)
    assert "accountExpires: 'endDate" in cfg and "endDate: endDate" in cfg
    env.write("idsync.yaml", cfg)

    def write(dates):
        rows = ["employeeId,givenName,sn,mail,title,endDate"]
        for i, d in enumerate(dates):
            rows.append("D%03d,Dated%d,Person%d,d%d@example.org,Clerk,%s" % (i, i, i, i, d))
        env.write("hr/people.csv", "\r\n".join(rows) + "\r\n")
        env.write("hr/teams.csv", "name,members\r\n")

    def expires():
        return {a["employeeID"][0]: a["accountExpires"][0] for _, a in dc.search(
            "OU=Dated," + SYNC_OU, "(objectClass=user)", ["employeeID", "accountExpires"])}

    write(["31.12.2026", "", "1.7.2027"])
    env.run("cycle", "--full", expect=0)
    # Python's datetime: 2027-01-01 and 2027-07-02, 00:00 UTC, in FILETIME
    assert expires() == {"D000": "134432352000000000", "D001": "9223372036854775807",
                         "D002": "134589600000000000"}
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0

    # a date moves, one is taken away, one is not a date; a new person's
    # date is not one either
    write(["28.02.2027", "31.02.2027", "", "32.1.2027"])
    p = env.run("cycle")
    assert p.returncode == 1, (p.stdout, p.stderr)
    errs = env.json("errors")
    errs = sorted(errs["errors"] if isinstance(errs, dict) else errs,
                  key=lambda e: e["dn"] or "")
    assert len(errs) == 2, errs
    assert all(e["attr"] == "accountExpires" and e["connector"] == "ad" for e in errs), errs
    # the new person has no AD object: named by where it comes from
    assert errs[0]["dn"] is None and " (from hr D003): " in errs[0]["message"], errs
    assert 'parse_time: "32.1.2027" is not a time of layout "D.M.YYYY"' in errs[0]["message"]
    # the others by the AD object the rule would have changed
    assert errs[1]["dn"].lower() == ("CN=Dated1 Person1,OU=Dated," + SYNC_OU).lower(), errs
    assert 'parse_time: "31.02.2027" is not a time of layout "D.M.YYYY"' in errs[1]["message"]
    got = expires()
    assert got["D000"] == "134483328000000000"  # 2027-03-01
    assert got["D002"] == "9223372036854775807"
    assert "D003" not in got  # not created while a rule of it fails


# ---- AD -> OpenLDAP ---------------------------------------------------------------

def hr_to_ad(env, dc, people):
    """CSV_TO_AD for dc; writes the HR files (one team of everyone) and
    returns the configuration."""
    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    return CSV_TO_AD.format(source=CSV_SOURCE.format(), url=dc.url, pw=dc.password_file,
                            sync=SYNC_OU)


def test_ad_keeps_its_own_form_of_a_dn_value(samba_dc, tmp_path):
    """A manager flow that names an AD account by a DN in lower case with
    spaces: AD stores the DN of the object it names ("CN=Administrator,
    CN=Users,DC=ids,DC=test"). Before, the confirming import reported it as
    exported-change-not-reimported and every cycle sent it again."""
    dc = samba_dc
    env = Env(tmp_path / "work")
    people = hr_people(3)
    cfg = hr_to_ad(env, dc, people)
    cfg = cfg.replace("employeeID, userAccountControl, objectClass]",
                      "employeeID, userAccountControl, objectClass, manager]", 1)
    flow = "          manager: '\"cn=administrator, cn=users, %s\"'\n" % AD_BASE.lower()
    cfg = cfg.replace("          title: title\n", "          title: title\n" + flow, 1)
    assert flow in cfg
    env.write("idsync.yaml", cfg)
    env.run("cycle", "--full", expect=0)
    got = dc.get("CN=Given1 Family1,OU=Imported," + SYNC_OU, ["manager"])["manager"]
    assert got == ["CN=Administrator,CN=Users," + AD_BASE], got
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.json("errors")["errors"] == []


def test_ad_account_deleted_by_hand_comes_back_with_its_groups(samba_dc, tmp_path):
    """An account deleted by hand in AD: AD takes it out of its groups, and
    DirSync reports the delete but not the group's change. The next delta
    cycle creates the account again and puts it back in the group (before:
    only a full import found the member missing)."""
    dc = samba_dc
    env = Env(tmp_path / "work")
    people = hr_people(4)
    env.write("idsync.yaml", hr_to_ad(env, dc, people))
    env.run("cycle", "--full", expect=0)
    group = "CN=all,OU=ImportedGroups," + SYNC_OU
    gone = "CN=Given1 Family1,OU=Imported," + SYNC_OU
    dc.delete(gone)
    assert len(dc.get(group, ["member"])["member"]) == 3
    env.run("cycle", expect=0)
    members = {norm(m) for m in dc.get(group, ["member"])["member"]}
    assert norm(gone) in members and len(members) == 4, members
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def test_ad_leavers_are_disabled_then_moved_to_their_ou(samba_dc, tmp_path):
    """AD: a leaver's account is disabled (ACCOUNTDISABLE set) by one export
    and moved by the next into OU=Leavers (created, create_parents: true);
    a rehire moves it back, enabled."""
    dc = samba_dc
    env = Env(tmp_path / "work")
    people = hr_people(3)
    cfg = hr_to_ad(env, dc, people)
    leavers = "OU=Leavers,OU=Imported," + SYNC_OU
    old = '        disable_value: "2"\n'
    assert old in cfg
    env.write("idsync.yaml", cfg.replace(old, old + "        disable_move_to: %s\n" % leavers, 1))
    env.run("cycle", "--full", expect=0)
    home = "CN=Given1 Family1,OU=Imported," + SYNC_OU
    moved = "CN=Given1 Family1," + leavers

    env.write("hr/people.csv", people_csv([people[0], people[2]]))
    env.write("hr/teams.csv", teams_csv({"all": ["E00000", "E00002"]}))
    env.run("cycle", expect=0)
    assert int(dc.get(home, ["userAccountControl"])["userAccountControl"][0]) & 2
    env.run("cycle", expect=0)
    assert dc.get(home) is None
    assert int(dc.get(moved, ["userAccountControl"])["userAccountControl"][0]) & 2
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0

    env.write("hr/people.csv", people_csv(people))
    env.write("hr/teams.csv", teams_csv({"all": [p["id"] for p in people]}))
    env.run("cycle", expect=0)
    assert dc.get(moved) is None
    assert not int(dc.get(home, ["userAccountControl"])["userAccountControl"][0]) & 2
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0


def ad_bind_works(dc, upn, password):
    """Whether a simple bind as upn with password succeeds (a search of the
    rootDSE after the bind; the password in a file, not on the command line)."""
    pw = os.path.join(dc.dir, "bind.secret")
    with open(pw, "w") as f:
        f.write(password)
    os.chmod(pw, 0o600)
    r = subprocess.run(["ldapsearch", "-x", "-H", dc.url, "-D", upn, "-y", pw, "-b", "", "-s",
                        "base", "-LLL", "1.1"], capture_output=True, text=True, timeout=30)
    assert r.returncode in (0, 49), r.stderr  # 49: invalid credentials
    os.unlink(pw)
    return r.returncode == 0


def store_bytes(env):
    """Every byte idsync keeps: the store, its WAL and what sits beside it."""
    out = b""
    for name in os.listdir(env.path):
        if name.startswith("idsync.db"):
            with open(os.path.join(env.path, name), "rb") as f:
                out += f.read()
    return out


def test_new_ad_accounts_get_an_initial_password_once(samba_dc, tmp_path):
    """initial_flow: accounts are created enabled (userAccountControl 512)
    with an initial password (unicodePwd, which the connector sends in AD's
    quoted UTF-16LE form), and neither is sent again: a password the user
    changed stays, and quiet cycles send nothing (before, a unicodePwd flow
    was sent at every sync, as AD never returns it, resetting the password
    each time). The password is masked in the dry run and not kept in the
    store. random_password() draws one per account."""
    dc = samba_dc
    env = Env(tmp_path / "work")
    people = hr_people(3)
    cfg = hr_to_ad(env, dc, people)
    initial = ("        initial_flow:\n"
               "          unicodePwd: '\"Wel-\" .. employeeId .. \"-c0me!\"'\n"
               "          userAccountControl: '\"512\"'\n")
    old = "        anchor_carrier: employeeID\n"
    assert old in cfg
    cfg = cfg.replace(old, old + initial, 1)
    env.write("idsync.yaml", cfg)

    dry = env.run("cycle", "--full", "--dry-run", expect=0).stdout
    assert "unicodePwd" in dry and "***" in dry and "c0me" not in dry, dry
    dump = env.run("config", "dump", expect=0).stdout
    assert "initial_flow" in dump and "unicodePwd" in dump and "c0me" not in dump, dump
    env.run("cycle", "--full", expect=0)
    user = "CN=Given1 Family1,OU=Imported," + SYNC_OU
    a = dc.get(user, ["userAccountControl", "pwdLastSet"])
    assert a["userAccountControl"] == ["512"] and a["pwdLastSet"] != ["0"], a
    assert ad_bind_works(dc, "e00001@ids.test", "Wel-E00001-c0me!")
    assert not ad_bind_works(dc, "e00001@ids.test", "Wel-E00002-c0me!")
    data = store_bytes(env)
    assert b"c0me" not in data and "c0me".encode("utf-16-le") not in data

    # the user sets their own password; nothing idsync does puts the first back
    dc.modify_ldif("dn: %s\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: %s\n" % (
        user, base64.b64encode('"Own-Secret-42"'.encode("utf-16-le")).decode()))
    assert ad_bind_works(dc, "e00001@ids.test", "Own-Secret-42")
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.json("errors")["errors"] == []
    assert ad_bind_works(dc, "e00001@ids.test", "Own-Secret-42")

    # a random password for each new account, to be changed at the first
    # logon (pwdLastSet 0), as examples/hr-to-ad.yaml does
    env.write("idsync.yaml", cfg.replace(
        "'\"Wel-\" .. employeeId .. \"-c0me!\"'\n",
        "random_password(20)\n          pwdLastSet: '\"0\"'\n"))
    people += [dict(hr_people(5)[3]), dict(hr_people(5)[4])]
    env.write("hr/people.csv", people_csv(people))
    env.run("cycle", expect=0)
    for i in (3, 4):
        a = dc.get("CN=Given%d Family%d,OU=Imported,%s" % (i, i, SYNC_OU),
                   ["userAccountControl", "pwdLastSet"])
        assert a["userAccountControl"] == ["512"] and a["pwdLastSet"] == ["0"], a
    env.run("cycle", "--full", expect=0)
    assert exports_of_last_cycle(env) == 0
    assert env.json("errors")["errors"] == []


AD_TO_OL = """store: sqlite:idsync.db
connectors:
  ad:
    type: ldap
    url: {url}
    bind_dn: Administrator@ids.test
    password_file: {pw}
    base: "{sync}"
    page_size: 500
    objects:
      user:
        base: "{people}"
        filter: (&(objectClass=user)(objectCategory=person))
        attributes: [objectGUID, sAMAccountName, mail, givenName, sn, displayName]
      group:
        base: "{groups}"
        filter: (objectClass=group)
        attributes: [objectGUID, cn, member]
        references: {{ member: [user, group, contact] }}
      contact:
        base: "{contacts}"
        filter: (objectClass=contact)
        attributes: [objectGUID, cn, mail, displayName]
{target}
metaverse:
  person:
    from:
      - connector: ad
        object: user
        project: true
        join: [ {{ sourceAnchor: base64(objectGUID) }} ]
        flow:
          sourceAnchor: base64(objectGUID)
          login: sAMAccountName
          mail: mail
          givenName: givenName
          sn: sn
          displayName: displayName
    to:
      - connector: dst
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: employeeNumber
        join: [ {{ employeeNumber: sourceAnchor }} ]
        flow:
          dn: '"uid=" .. dn_escape(lower(login)) .. ",{lpeople}"'
          employeeNumber: sourceAnchor
          uid: lower(login)
          cn: 'displayName or login'
          sn: 'sn or login'
          givenName: givenName
          mail: mail
  contact:
    from:
      - connector: ad
        object: contact
        project: true
        join: [ {{ sourceAnchor: base64(objectGUID) }} ]
        flow: {{ sourceAnchor: base64(objectGUID), name: cn, mail: mail }}
    to:
      - connector: dst
        object: contact
        provision: true
        deprovision: delete
        anchor_carrier: employeeNumber
        join: [ {{ employeeNumber: sourceAnchor }} ]
        flow:
          dn: '"cn=" .. dn_escape(name) .. ",{lcontacts}"'
          employeeNumber: sourceAnchor
          cn: name
          sn: name
          mail: mail
  group:
    from:
      - connector: ad
        object: group
        project: true
        join: [ {{ sourceAnchor: base64(objectGUID) }} ]
        flow: {{ sourceAnchor: base64(objectGUID), name: cn, members: member }}
    to:
      - connector: dst
        object: group
        provision: true
        deprovision: delete
        anchor_carrier: description
        join: [ {{ description: sourceAnchor }} ]
        flow:
          dn: '"cn=" .. dn_escape(name) .. ",{lgroups}"'
          cn: name
          description: sourceAnchor
          member: members
safety:
  max_deletes: 100
  max_delete_percent: 0
"""


def test_ad_to_openldap(samba_dc, slapd_factory, tmp_path):
    dc = samba_dc
    dst = slapd_factory("dst")
    env = Env(tmp_path / "work")
    env.write("idsync.yaml", AD_TO_OL.format(
        url=dc.url, pw=dc.password_file, sync=SYNC_OU, people=AD_PEOPLE, groups=AD_GROUPS,
        contacts=AD_CONTACTS, target=target_ldap_connector(dst), lpeople=PEOPLE,
        lgroups=GROUPS, lcontacts=CONTACTS))
    env.run("cycle", "--full", expect=0)
    got = people_of(dst, PEOPLE)
    assert len(got) == SEED_USERS
    assert got["u3"]["mail"] == ["u3@ids.test"]
    assert len(group_members(dst, "cn=Big,%s" % GROUPS)) == SEED_USERS  # > 1,500
    assert group_members(dst, "cn=Nested,%s" % GROUPS) == {norm("cn=Small,%s" % GROUPS),
                                                          norm("uid=u5,%s" % PEOPLE)}
    assert len(dst.search(CONTACTS, "(objectClass=inetOrgPerson)", ["1.1"])) == 5

    dc.add("CN=Fresh,%s" % AD_PEOPLE, {"objectClass": "user", "sAMAccountName": "fresh",
                                       "mail": "fresh@ids.test"})
    dc.modify_ldif("dn: CN=User 10,%s\nchangetype: modify\nreplace: mail\nmail: ten@x\n"
                   % AD_PEOPLE)
    dc.modify_ldif("dn: CN=Big,%s\nchangetype: modify\ndelete: member\nmember: CN=User 20,%s\n"
                   "-\nadd: member\nmember: CN=Fresh,%s\n" % (AD_GROUPS, AD_PEOPLE, AD_PEOPLE))
    # Samba's DirSync does not report the member links it drops when a member is
    # deleted (AD removes them too): take User 21 out of Big first, as an admin would
    dc.modify_ldif("dn: CN=Big,%s\nchangetype: modify\ndelete: member\nmember: CN=User 21,%s\n"
                   % (AD_GROUPS, AD_PEOPLE))
    dc.delete("CN=User 21,%s" % AD_PEOPLE)
    dc.delete("CN=Contact 1,%s" % AD_CONTACTS)
    env.run("cycle", expect=0)
    got = people_of(dst, PEOPLE)
    assert got["fresh"]["mail"] == ["fresh@ids.test"]
    assert got["u10"]["mail"] == ["ten@x"]
    assert "u21" not in got
    big = group_members(dst, "cn=Big,%s" % GROUPS)
    assert norm("uid=fresh,%s" % PEOPLE) in big and norm("uid=u20,%s" % PEOPLE) not in big
    assert len(dst.search(CONTACTS, "(objectClass=inetOrgPerson)", ["1.1"])) == 4
    env.run("cycle", expect=0)
    assert exports_of_last_cycle(env) == 0
