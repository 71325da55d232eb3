"""SCIM with a real directory on the other side, through the `idsync`
binary: OpenLDAP -> SCIM (users, nested groups, hostile values; a full
cycle, then a delta cycle with every kind of change made in slapd), AD
(Samba) -> SCIM (a group over 1,500 members, DirSync deltas, disable on
delete) and SCIM -> OpenLDAP (the cloud as the source of users and groups).

Asserted: what the SCIM service holds (read from the service) and what
slapd holds (ldapsearch), after each cycle.
"""
import os

import pytest

from fixtures.samba import (GROUPS as AD_GROUPS, PEOPLE as AD_PEOPLE,  # noqa: F401
                            SEED_USERS, SYNC_OU, samba_dc, samba_factory, samba_template)
from fixtures.scim import node_available, scim_service, scim_workdir  # noqa: F401
from fixtures.slapd import entry_ldif, slapd_factory  # noqa: F401
from test_scim_cli import IDSYNC, Env

pytestmark = [
    pytest.mark.skipif(not os.path.exists(IDSYNC), reason="idsync not built (%s)" % IDSYNC),
    pytest.mark.skipif(not node_available(), reason="node/npm not installed"),
]

SUFFIX = "dc=example,dc=org"
PEOPLE = "ou=People," + SUFFIX
GROUPS = "ou=Groups," + SUFFIX
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
HOSTILE = ['quo"te', "back\\slash", "star*", "caf\u00e9 \u65e5\u672c", 'x" or userName pr or "']

OL_TO_SCIM = """store: sqlite:idsync.db
connectors:
  dir:
    type: ldap
    url: {url}
    bind_dn: "{dn}"
    password_file: {pw}
    base: "{suffix}"
    objects:
      person:
        base: {people}
        filter: (objectClass=inetOrgPerson)
        attributes: [uid, cn, sn, givenName, mail, title, departmentNumber]
      group:
        base: {groups}
        filter: (objectClass=groupOfNames)
        attributes: [cn, member]
        references: {{ member: [person, group] }}
  cloud:
    type: scim
    url: {scim}
    token_file: {token}
    objects:
      User:
        attributes: [userName, externalId, displayName, name.givenName, name.familyName, title,
                     emails, active, enterprise:department]
      Group:
        attributes: [displayName, externalId, members]
        references: {{ members: [User, Group] }}
metaverse:
  person:
    from:
      - connector: dir
        object: person
        project: true
        join: [ {{ sourceAnchor: _anchor }} ]
        flow: {{ sourceAnchor: _anchor, uid: uid, cn: cn, sn: sn, givenName: givenName,
                mail: mail, title: title, dept: departmentNumber }}
    to:
      - connector: cloud
        object: User
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ {{ externalId: sourceAnchor }}, {{ userName: uid }} ]
        flow:
          externalId: sourceAnchor
          userName: uid
          displayName: cn
          name.givenName: givenName
          name.familyName: sn
          title: title
          enterprise:department: dept
          emails: 'mail and {{ {{value = mail, type = "work", primary = true}} }}'
  group:
    from:
      - connector: dir
        object: group
        project: true
        join: [ {{ sourceAnchor: _anchor }} ]
        flow: {{ sourceAnchor: _anchor, name: cn, members: member }}
    to:
      - connector: cloud
        object: Group
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ {{ externalId: sourceAnchor }} ]
        flow: {{ externalId: sourceAnchor, displayName: name, members: members }}
safety:
  max_deletes: 100
  max_delete_percent: 0
"""


def seed(s, n):
    path = os.path.join(s.dir, "seed.ldif")
    with open(path, "w") as f:
        for i in range(n):
            f.write(entry_ldif("uid=u%d,%s" % (i, PEOPLE), {
                "objectClass": "inetOrgPerson", "uid": "u%d" % i, "cn": "User %d" % i,
                "sn": "S%d" % i, "givenName": "G%d" % i, "mail": "u%d@example.org" % i,
                "title": "Engineer", "departmentNumber": "D%d" % (i % 3)}))
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
    s.slapadd(path)


def expect_scim_equals_ldap(svc, ldap):
    people = {a["uid"][0]: a for dn, a in ldap.search(PEOPLE, "(objectClass=inetOrgPerson)",
                                                      ["*", "entryUUID"])}
    users = svc.users_by("externalId")
    assert len(users) == len(people)
    by_uid = {u["userName"]: u for u in users.values()}
    assert len(by_uid) == len(users)
    for uid, a in people.items():
        u = by_uid[uid.lower()] if uid.lower() in by_uid else by_uid[uid]
        assert u["externalId"] == a["entryUUID"][0]
        assert u["displayName"] == a["cn"][0]
        assert u["name"]["familyName"] == a["sn"][0]
        assert u.get("title") == a.get("title", [None])[0]
        if "mail" in a:
            assert u["emails"][0]["value"] == a["mail"][0]
    ids = {u["id"]: u["userName"] for u in users.values()}
    groups = svc.groups_by("displayName")
    ldap_groups = {a["cn"][0]: a for dn, a in ldap.search(GROUPS, "(objectClass=groupOfNames)",
                                                          ["cn", "member"])}
    assert set(groups) == set(ldap_groups)
    gids = {g["id"]: name for name, g in groups.items()}
    for name, a in ldap_groups.items():
        want = sorted(m.split(",")[0].split("=")[1] for m in a.get("member", []))
        got = sorted(ids.get(m["value"]) or gids.get(m["value"])
                     for m in groups[name].get("members", []))
        assert got == want, name


def test_openldap_to_scim_full_then_delta(slapd_factory, scim_service, tmp_path):
    src = slapd_factory("src", start=False)
    seed(src, 40)
    src.start()
    env = Env(tmp_path / "work")
    os.makedirs(env.path, exist_ok=True)
    env.write("idsync.yaml", OL_TO_SCIM.format(
        url=src.url, dn=src.rootdn, pw=src.password_file, suffix=SUFFIX, people=PEOPLE,
        groups=GROUPS, scim=scim_service.url, token=scim_service.token_file))
    env.run("cycle", "--full", expect=0)
    expect_scim_equals_ldap(scim_service, src)
    # hostile values arrive unchanged, and are found again by their anchor
    titles = {u.get("title") for u in scim_service.dump()["Users"]}
    assert set(HOSTILE) <= titles

    # every kind of change, made in slapd
    src.modify_ldif("dn: uid=u1,%s\nchangetype: modify\nreplace: title\ntitle: Director\n-\n"
                    "replace: departmentNumber\ndepartmentNumber: Ops\n" % PEOPLE)
    src.modify_ldif("dn: uid=u2,%s\nchangetype: modify\nreplace: cn\ncn: Renamed Two\n"
                    % PEOPLE)
    src.modify_ldif("dn: uid=u3,%s\nchangetype: modrdn\nnewrdn: uid=u3b\ndeleteoldrdn: 1\n"
                    % PEOPLE)
    src.delete("uid=u4,%s" % PEOPLE)  # a member of small
    src.add("uid=new,%s" % PEOPLE, {"objectClass": "inetOrgPerson", "uid": "new",
                                    "cn": "New One", "sn": "One", "title": "Intern"})
    src.modify_ldif("dn: cn=small,%s\nchangetype: modify\nadd: member\nmember: uid=new,%s\n-\n"
                    "delete: member\nmember: uid=u0,%s\n" % (GROUPS, PEOPLE, PEOPLE))
    src.add("cn=fresh,%s" % GROUPS, {"objectClass": "groupOfNames", "cn": "fresh",
                                     "member": ["uid=u7,%s" % PEOPLE, "cn=nested,%s" % GROUPS]})
    env.run("cycle", expect=0)
    expect_scim_equals_ldap(scim_service, src)
    u = scim_service.users_by("userName")
    assert u["u1"]["title"] == "Director" and u["u1"][ENT]["department"] == "Ops"
    assert "u3b" in u and "u3" not in u and "u4" not in u
    # a quiet cycle changes nothing in the service
    before = scim_service.stats()["byMethod"]
    env.run("cycle", expect=0)
    after = scim_service.stats()["byMethod"]
    for m in ("POST", "PATCH", "PUT", "DELETE"):
        assert after.get(m, 0) == before.get(m, 0), m

    # two groups that contain each other: created without each other by the
    # next cycle, completed (PATCH) by the one after
    src.add("cn=ring1,%s" % GROUPS, {"objectClass": "groupOfNames", "cn": "ring1",
                                     "member": ["uid=u8,%s" % PEOPLE, "cn=ring2,%s" % GROUPS]})
    src.add("cn=ring2,%s" % GROUPS, {"objectClass": "groupOfNames", "cn": "ring2",
                                     "member": ["uid=u9,%s" % PEOPLE, "cn=ring1,%s" % GROUPS]})
    env.run("cycle", expect=0)
    groups = scim_service.groups_by("displayName")
    assert len(groups["ring1"].get("members", [])) == 1
    assert len(groups["ring2"].get("members", [])) == 1
    env.run("cycle", expect=0)
    expect_scim_equals_ldap(scim_service, src)


SCIM_TO_OL = """store: sqlite:idsync.db
connectors:
  cloud:
    type: scim
    url: {scim}
    token_file: {token}
    page_size: 10
    objects:
      User:
        attributes: [userName, displayName, name.familyName, title]
      Group:
        attributes: [displayName, members]
        references: {{ members: [User, Group] }}
  dir:
    type: ldap
    url: {url}
    bind_dn: "{dn}"
    password_file: {pw}
    base: "{suffix}"
    objects:
      user:
        base: {people}
        filter: (objectClass=inetOrgPerson)
        attributes: [uid, cn, sn, title, employeeNumber]
        object_classes: [inetOrgPerson]
      group:
        base: {groups}
        filter: (objectClass=groupOfNames)
        attributes: [cn, member, description]
        object_classes: [groupOfNames]
        references: {{ member: [user, group] }}
metaverse:
  person:
    from:
      - connector: cloud
        object: User
        project: true
        join: [ {{ cloudId: _anchor }} ]
        flow: {{ cloudId: _anchor, login: userName, name: displayName,
                sn: 'attr("name.familyName") or userName', title: title }}
    to:
      - connector: dir
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: employeeNumber
        join: [ {{ employeeNumber: cloudId }} ]
        flow:
          dn: '"uid=" .. dn_escape(login) .. ",{people}"'
          uid: login
          cn: name
          sn: sn
          title: title
          employeeNumber: cloudId
  team:
    from:
      - connector: cloud
        object: Group
        project: true
        join: [ {{ cloudId: _anchor }} ]
        flow: {{ cloudId: _anchor, name: displayName, members: members }}
    to:
      - connector: dir
        object: group
        provision: true
        deprovision: delete
        anchor_carrier: description
        join: [ {{ description: cloudId }} ]
        flow:
          dn: '"cn=" .. dn_escape(name) .. ",{groups}"'
          cn: name
          member: members
          description: cloudId
"""


def test_scim_to_openldap(slapd_factory, scim_service, tmp_path):
    dst = slapd_factory("dst")
    ids = {}
    for i in range(25):
        st, u = scim_service.request("POST", "/Users", {
            "userName": "c%d" % i, "displayName": "Cloud %d" % i,
            "name": {"familyName": "F%d" % i}, "title": "T%d" % i})
        assert st == 201
        ids[i] = u["id"]
    st, g1 = scim_service.request("POST", "/Groups", {
        "displayName": "cloud-team", "members": [{"value": ids[i]} for i in range(3)]})
    assert st == 201
    st, g2 = scim_service.request("POST", "/Groups", {
        "displayName": "outer", "members": [{"value": g1["id"]}, {"value": ids[10]}]})
    assert st == 201
    env = Env(tmp_path / "work")
    os.makedirs(env.path, exist_ok=True)
    env.write("idsync.yaml", SCIM_TO_OL.format(
        url=dst.url, dn=dst.rootdn, pw=dst.password_file, suffix=SUFFIX, people=PEOPLE,
        groups=GROUPS, scim=scim_service.url, token=scim_service.token_file))
    env.run("cycle", "--full", expect=0)
    people = {a["uid"][0]: a for dn, a in dst.search(PEOPLE, "(objectClass=inetOrgPerson)",
                                                     ["*"])}
    assert len(people) == 25
    assert people["c7"]["cn"] == ["Cloud 7"] and people["c7"]["sn"] == ["F7"]
    assert people["c7"]["employeeNumber"] == [ids[7]]

    def members(cn):
        g = dst.get("cn=%s,%s" % (cn, GROUPS), ["member"])
        return sorted(m.split(",")[0].lower() for m in g.get("member", []))

    assert members("cloud-team") == ["uid=c0", "uid=c1", "uid=c2"]
    assert members("outer") == ["cn=cloud-team", "uid=c10"]
    # changes in the cloud reach the directory
    scim_service.request("PATCH", "/Users/%s" % ids[3], {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]})
    scim_service.request("DELETE", "/Users/%s" % ids[2])
    scim_service.request("PATCH", "/Groups/%s" % g1["id"], {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[20]}]}]})
    env.run("cycle", expect=0)
    people = {a["uid"][0]: a for dn, a in dst.search(PEOPLE, "(objectClass=inetOrgPerson)",
                                                     ["*"])}
    assert "c2" not in people and people["c3"]["title"] == ["Boss"]
    assert members("cloud-team") == ["uid=c0", "uid=c1", "uid=c20"]


AD_TO_SCIM = """store: sqlite:idsync.db
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
        attributes: [objectGUID, sAMAccountName, userPrincipalName, mail, givenName, sn,
                     displayName]
      group:
        base: "{groups}"
        filter: (objectClass=group)
        attributes: [objectGUID, cn, member]
        references: {{ member: [user, group] }}
  cloud:
    type: scim
    url: {scim}
    token_file: {token}
    patch_chunk: 400
    objects:
      User:
        attributes: [userName, externalId, displayName, name.givenName, name.familyName, emails,
                     active]
      Group:
        attributes: [displayName, externalId, members]
        references: {{ members: [User, Group] }}
metaverse:
  person:
    from:
      - connector: ad
        object: user
        project: true
        join: [ {{ sourceAnchor: base64(objectGUID) }} ]
        flow:
          sourceAnchor: base64(objectGUID)
          upn: 'userPrincipalName or (sAMAccountName .. "@ids.test")'
          mail: mail
          givenName: givenName
          sn: sn
          displayName: 'displayName or sAMAccountName'
    to:
      - connector: cloud
        object: User
        provision: true
        deprovision: disable
        anchor_carrier: externalId
        join: [ {{ externalId: sourceAnchor }}, {{ userName: upn }} ]
        flow:
          externalId: sourceAnchor
          userName: upn
          displayName: displayName
          name.givenName: givenName
          name.familyName: sn
          emails: 'mail and {{ {{value = mail, type = "work", primary = true}} }}'
  group:
    from:
      - connector: ad
        object: group
        project: true
        join: [ {{ sourceAnchor: base64(objectGUID) }} ]
        flow: {{ sourceAnchor: base64(objectGUID), name: cn, members: member }}
    to:
      - connector: cloud
        object: Group
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ {{ externalId: sourceAnchor }} ]
        flow: {{ externalId: sourceAnchor, displayName: name, members: members }}
safety:
  max_deletes: 100
  max_delete_percent: 0
"""


def test_ad_to_scim(samba_dc, scim_service, tmp_path):
    dc = samba_dc
    env = Env(tmp_path / "work")
    os.makedirs(env.path, exist_ok=True)
    env.write("idsync.yaml", AD_TO_SCIM.format(
        url=dc.url, pw=dc.password_file, sync=SYNC_OU, people=AD_PEOPLE, groups=AD_GROUPS,
        scim=scim_service.url, token=scim_service.token_file))
    env.run("cycle", "--full", expect=0)
    users = scim_service.users_by("userName")
    assert len(users) == SEED_USERS
    assert users["u3@ids.test"]["emails"][0]["value"] == "u3@ids.test"
    ids = {u["id"]: name for name, u in users.items()}
    groups = scim_service.groups_by("displayName")
    gids = {g["id"]: name for name, g in groups.items()}
    assert len(groups["Big"]["members"]) == SEED_USERS  # more than AD's 1,500 range
    nested = sorted(ids.get(m["value"]) or gids.get(m["value"])
                    for m in groups["Nested"]["members"])
    assert nested == ["Small", "u5@ids.test"]

    dc.add("CN=Fresh,%s" % AD_PEOPLE, {"objectClass": "user", "sAMAccountName": "fresh",
                                       "userPrincipalName": "fresh@ids.test",
                                       "mail": "fresh@ids.test"})
    dc.modify_ldif("dn: CN=User 10,%s\nchangetype: modify\nreplace: mail\nmail: ten@x.test\n"
                   % AD_PEOPLE)
    dc.modify_ldif("dn: CN=Big,%s\nchangetype: modify\ndelete: member\nmember: CN=User 20,%s\n"
                   "-\nadd: member\nmember: CN=Fresh,%s\n" % (AD_GROUPS, AD_PEOPLE, AD_PEOPLE))
    dc.modify_ldif("dn: CN=Big,%s\nchangetype: modify\ndelete: member\nmember: CN=User 21,%s\n"
                   % (AD_GROUPS, AD_PEOPLE))
    dc.delete("CN=User 21,%s" % AD_PEOPLE)
    env.run("cycle", expect=0)
    users = scim_service.users_by("userName")
    assert users["fresh@ids.test"]["emails"][0]["value"] == "fresh@ids.test"
    assert users["u10@ids.test"]["emails"][0]["value"] == "ten@x.test"
    assert users["u21@ids.test"]["active"] is False  # deprovision: disable
    big = {m["value"] for m in scim_service.groups_by("displayName")["Big"]["members"]}
    assert users["fresh@ids.test"]["id"] in big
    assert users["u20@ids.test"]["id"] not in big
    assert users["u21@ids.test"]["id"] not in big
