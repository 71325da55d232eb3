"""The LDAP connector against a real Samba AD domain controller (a copy of
the session's seeded DC, see fixtures/samba.py), through tests/tools/conntool.
"""
import base64
import json
import os
import re
import uuid

import pytest

from fixtures.samba import (BASE, CONTACTS, GROUPS, PEOPLE, SEED_USERS, SYNC_OU,  # noqa: F401
                            samba_dc, samba_factory, samba_template)
from test_ldap import CONNTOOL, add_change, conntool, export, lines, read

pytestmark = pytest.mark.skipif(not os.path.exists(CONNTOOL),
                                reason="conntool not built (%s)" % CONNTOOL)

OBJECTS = """
      user:
        base: {people}
        filter: (&(objectClass=user)(objectCategory=person))
        attributes: [sAMAccountName, userPrincipalName, mail, givenName, sn, displayName,
                     objectSid, userAccountControl, thumbnailPhoto]
        object_classes: [user]
      group:
        base: {groups}
        filter: (objectClass=group)
        attributes: [cn, sAMAccountName, member]
        object_classes: [group]
        references: {{ member: [user, group, contact] }}
      contact:
        base: {contacts}
        filter: (objectClass=contact)
        attributes: [cn, mail, displayName]
        object_classes: [contact]
""".format(people=PEOPLE, groups=GROUPS, contacts=CONTACTS)


def ad_config(dc, path, bind_dn="Administrator@ids.test", password_file=None, extra=""):
    text = """store: sqlite:{dir}/idsync.db
connectors:
  dir:
    type: ldap
    url: {url}
    bind_dn: "{bind}"
    password_file: {pw}
    base: "{base}"
{extra}
    objects:
{objects}
""".format(dir=os.path.dirname(path), url=dc.url, bind=bind_dn,
           pw=password_file or dc.password_file, base=SYNC_OU,
           extra="\n".join("    " + l for l in extra.strip().split("\n")) if extra.strip() else "",
           objects=OBJECTS.rstrip("\n"))
    with open(path, "w") as f:
        f.write(text)
    return path


def guid_of(raw):
    """objectGUID bytes -> the canonical GUID string idsync shows."""
    return str(uuid.UUID(bytes_le=raw))


def b64(value):
    return base64.b64decode(value["base64"]) if isinstance(value, dict) else value.encode()


@pytest.fixture
def ad(samba_dc, tmp_path):
    return samba_dc, ad_config(samba_dc, str(tmp_path / "idsync.yaml"), extra="page_size: 200")


def test_ad_check(ad):
    dc, cfg = ad
    out = conntool(cfg, "check").stdout
    assert "flavour: ad" in out
    assert "anchor: objectGUID" in out
    assert "dirsync=yes" in out
    assert "delta: dirsync" in out
    assert "objects.user: %d" % SEED_USERS in out
    assert "objects.contact: 5" in out
    # AD's schema (CN=Aggregate) knows every configured attribute
    n = int(re.search(r"schema: (\d+) attribute names", out).group(1))
    assert n > 1000, out
    assert "unknown attributes" not in out, out


def test_ad_full_read_anchors_sids_big_group(ad):
    dc, cfg = ad
    items, wm = read(cfg)
    by_type = {}
    for i in items:
        by_type.setdefault(i["entry"]["type"], []).append(i["entry"])
    assert len(by_type["user"]) == SEED_USERS
    assert len(by_type["contact"]) == 5
    groups = {g["attributes"]["cn"][0]: g for g in by_type["group"]}
    assert len(groups["Big"]["attributes"]["member"]) == SEED_USERS  # over 1,500
    assert sorted(groups["Nested"]["attributes"]["member"])[0].startswith("CN=Small,")
    u0 = [u for u in by_type["user"] if u["attributes"]["sAMAccountName"] == ["u0"]][0]
    raw = b64(u0["attributes"]["objectGUID"][0])
    assert len(raw) == 16
    assert u0["anchor"] == guid_of(raw)  # base64(objectGUID) is the ImmutableID form
    assert u0["attributes"]["objectSid"][0].startswith("S-1-5-21-")
    truth = dc.get(u0["dn"], ["objectGUID"])["objectGUID"][0]
    assert truth == raw
    assert wm.startswith("dirsync:")


def test_ad_binary_attribute_kept_as_bytes(ad):
    dc, cfg = ad
    photo = bytes(range(256)) * 4
    dc.modify_ldif("dn: CN=User 7,%s\nchangetype: modify\nreplace: thumbnailPhoto\n"
                   "thumbnailPhoto:: %s\n" % (PEOPLE, base64.b64encode(photo).decode()))
    out = lines(conntool(cfg, "lookup", "user", "sAMAccountName", "u7"))
    assert b64(out[0]["attributes"]["thumbnailPhoto"][0]) == photo


def test_dirsync_delta(ad):
    dc, cfg = ad
    items, wm = read(cfg)
    anchors = {i["entry"]["dn"]: i["entry"]["anchor"] for i in items}
    dc.add("CN=Fresh,%s" % PEOPLE, {"objectClass": "user", "sAMAccountName": "fresh",
                                    "mail": "fresh@ids.test"})
    dc.modify_ldif("dn: CN=User 10,%s\nchangetype: modify\nreplace: mail\nmail: changed@x\n"
                   % PEOPLE)
    dc.modify_ldif("dn: CN=User 11,%s\nchangetype: modrdn\nnewrdn: CN=User Eleven\n"
                   "deleteoldrdn: 1\n" % PEOPLE)
    dc.modify_ldif("dn: CN=User 12,%s\nchangetype: modrdn\nnewrdn: CN=User 12\n"
                   "deleteoldrdn: 1\nnewsuperior: CN=Users,%s\n" % (PEOPLE, BASE))
    dc.modify_ldif("dn: CN=Big,%s\nchangetype: modify\ndelete: member\nmember: CN=User 20,%s\n"
                   "-\nadd: member\nmember: CN=Fresh,%s\n" % (GROUPS, PEOPLE, PEOPLE))
    dc.delete("CN=Contact 0,%s" % CONTACTS)
    delta, wm2 = read(cfg, "read-changes", wm)
    adds = {i["entry"]["dn"]: i["entry"] for i in delta if i["op"] == "add"}
    mods = [i["change"] for i in delta if i["op"] == "modify"]
    dels = {i["change"]["anchor"] for i in delta if i["op"] == "delete"}
    assert "CN=Fresh,%s" % PEOPLE in adds
    assert adds["CN=User 10,%s" % PEOPLE]["attributes"]["mail"] == ["changed@x"]
    assert adds["CN=User Eleven,%s" % PEOPLE]["anchor"] == anchors["CN=User 11,%s" % PEOPLE]
    assert anchors["CN=User 12,%s" % PEOPLE] in dels  # moved out of scope
    assert anchors["CN=Contact 0,%s" % CONTACTS] in dels  # tombstone
    big = [m for m in mods if m["anchor"] == anchors["CN=Big,%s" % GROUPS]]
    assert big, delta  # value-level: the 1,600 others are not re-read
    ops = {(m["op"], v.lower()) for m2 in big for m in m2["mods"] for v in m["values"]}
    assert ("delete", ("CN=User 20,%s" % PEOPLE).lower()) in ops
    assert ("add", ("CN=Fresh,%s" % PEOPLE).lower()) in ops
    assert not any(e["attributes"].get("cn") == ["Big"] for e in adds.values())
    again, _ = read(cfg, "read-changes", wm2)
    assert again == []


def test_dirsync_refused_falls_back_to_usn(samba_dc, tmp_path):
    dc = samba_dc
    cfg = ad_config(dc, str(tmp_path / "u.yaml"), bind_dn=dc.user_dn,
                    password_file=dc.user_password_file)
    p = conntool(cfg, "read-full")
    assert "ldap-dirsync-refused" in p.stderr and "uSNChanged" in p.stderr
    out = lines(p)
    wm = [o["watermark"] for o in out if "watermark" in o][0]
    assert wm.startswith("usn:")
    anchors = {o["entry"]["dn"]: o["entry"]["anchor"] for o in out if "entry" in o}
    dc.modify_ldif("dn: CN=User 3,%s\nchangetype: modify\nreplace: mail\nmail: usn@x\n" % PEOPLE)
    dc.delete("CN=User 4,%s" % PEOPLE)
    delta, wm2 = read(cfg, "read-changes", wm)
    adds = {i["entry"]["dn"]: i["entry"] for i in delta if i["op"] == "add"}
    assert adds["CN=User 3,%s" % PEOPLE]["attributes"]["mail"] == ["usn@x"]
    assert int(wm2.split(":")[1]) > int(wm.split(":")[1])
    dels = {i["change"]["anchor"] for i in delta if i["op"] == "delete"}
    assert anchors["CN=User 4,%s" % PEOPLE] in dels


def test_ad_export_add_disable_enable_delete(ad):
    dc, cfg = ad
    changes = [
        add_change("CN=New\\, Person,%s" % PEOPLE, {
            "sAMAccountName": "newp", "userPrincipalName": "newp@ids.test",
            "mail": "newp@ids.test", "givenName": "New", "sn": "Person",
            "userAccountControl": "512"}),
        add_change("CN=New Contact,%s" % CONTACTS, {"mail": "nc@ext.test"}, "contact"),
        add_change("CN=New Group,%s" % GROUPS, {
            "sAMAccountName": "newgroup",
            "member": ["CN=User 1,%s" % PEOPLE, "CN=Small,%s" % GROUPS]}, "group"),
    ]
    res = export(cfg, changes)
    assert all(r["status"] == "ok" for r in res.values()), res
    got = dc.get("CN=New\\, Person,%s" % PEOPLE, ["objectGUID", "userAccountControl"])
    assert res[1]["anchor"] == guid_of(got["objectGUID"][0])
    assert got["userAccountControl"] == ["512"]
    grp = dc.get("CN=New Group,%s" % GROUPS, ["member"])
    assert len(grp["member"]) == 2

    # disable: only ACCOUNTDISABLE changes, the other bits stay
    dc.modify_ldif("dn: CN=New\\, Person,%s\nchangetype: modify\nreplace: userAccountControl\n"
                   "userAccountControl: 66048\n" % PEOPLE)  # NORMAL_ACCOUNT|DONT_EXPIRE_PASSWD
    dis = {"op": "modify", "type": "user", "dn": "CN=New\\, Person,%s" % PEOPLE,
           "anchor": res[1]["anchor"],
           "mods": [{"op": "replace", "attr": "userAccountControl", "values": ["2"]}]}
    assert export(cfg, [dis])[1]["status"] == "ok"
    assert dc.get("CN=New\\, Person,%s" % PEOPLE,
                  ["userAccountControl"])["userAccountControl"] == ["66050"]
    dis["mods"][0]["values"] = ["0"]
    assert export(cfg, [dis])[1]["status"] == "ok"
    assert dc.get("CN=New\\, Person,%s" % PEOPLE,
                  ["userAccountControl"])["userAccountControl"] == ["66048"]

    # moved by someone else: the modify finds it by objectGUID
    dc.modify_ldif("dn: CN=New\\, Person,%s\nchangetype: modrdn\nnewrdn: CN=Moved\n"
                   "deleteoldrdn: 1\n" % PEOPLE)
    mod = {"op": "modify", "type": "user", "dn": "CN=New\\, Person,%s" % PEOPLE,
           "anchor": res[1]["anchor"],
           "mods": [{"op": "replace", "attr": "mail", "values": ["moved@ids.test"]}]}
    r = export(cfg, [mod])[1]
    assert r["status"] == "ok" and r["dn"] == "CN=Moved,%s" % PEOPLE
    assert dc.get("CN=Moved,%s" % PEOPLE, ["mail"])["mail"] == ["moved@ids.test"]

    dels = [{"op": "delete", "type": "user", "dn": "CN=Moved,%s" % PEOPLE,
             "anchor": res[1]["anchor"]},
            {"op": "delete", "type": "contact", "dn": "CN=New Contact,%s" % CONTACTS}]
    res2 = export(cfg, dels)
    assert all(r["status"] == "ok" for r in res2.values()), res2
    assert dc.get("CN=Moved,%s" % PEOPLE) is None
    assert dc.get("CN=New Contact,%s" % CONTACTS) is None


def test_ad_group_changes_that_ad_already_made_are_not_errors(ad):
    """AD rewrites a group's member DNs when a member is renamed; the change
    idsync sends for its own rename (new DN in, old DN out) then names a
    link AD already holds ("already exists") and a DN it cannot find
    (unwillingToPerform): both are dropped as no-ops, not export errors. A
    member that does not exist at all stays an error."""
    dc, cfg = ad
    old = "CN=Link Member,%s" % PEOPLE
    new = "CN=Link Member Renamed,%s" % PEOPLE
    group = "CN=Link Group,%s" % GROUPS
    res = export(cfg, [add_change(old, {"sAMAccountName": "linkm", "sn": "Member"}),
                       add_change(group, {"sAMAccountName": "linkg", "member": [old]}, "group")])
    assert all(r["status"] == "ok" for r in res.values()), res
    dc.modify_ldif("dn: %s\nchangetype: modrdn\nnewrdn: CN=Link Member Renamed\n"
                   "deleteoldrdn: 1\n" % old)
    assert [m.lower() for m in dc.get(group, ["member"])["member"]] == [new.lower()]

    def modify(*mods):
        return export(cfg, [{"op": "modify", "type": "group", "dn": group,
                             "anchor": res[2]["anchor"],
                             "mods": [{"op": op, "attr": "member", "values": [v],
                                       "reference": True} for op, v in mods]}],
                      check=False)[1]

    r = modify(("add", new), ("delete", old))
    assert r["status"] == "ok", r
    r = modify(("delete", old))
    assert r["status"] == "ok", r
    r = modify(("add", "CN=Nobody Here,%s" % PEOPLE))
    assert r["status"] != "ok", r
    assert [m.lower() for m in dc.get(group, ["member"])["member"]] == [new.lower()]


def test_ad_no_op_values_of_a_group_over_1500_members(ad):
    """A modify of a group of over 1,500 members (AD sends those in ranges)
    that the server refuses for a value already there: which member values
    are no-ops is asked of the server (compare), not read from the first
    range, so a member to remove is still removed."""
    dc, cfg = ad
    big = "CN=Big,%s" % GROUPS
    members = dc.get(big, ["member"])["member"]
    assert len(members) > 1500
    drop, keep = members[-1], members[0]  # the last is beyond the first range
    anchor = [i for i in read(cfg)[0] if i["entry"]["dn"] == big][0]["entry"]["anchor"]
    r = export(cfg, [{"op": "modify", "type": "group", "dn": big, "anchor": anchor,
                      "mods": [{"op": "add", "attr": "member", "values": [keep],
                                "reference": True},
                               {"op": "delete", "attr": "member", "values": [drop],
                                "reference": True}]}],
               check=False)[1]
    try:
        assert r["status"] == "ok", r
        now = {m.lower() for m in dc.get(big, ["member"])["member"]}
        assert drop.lower() not in now and keep.lower() in now
        assert len(now) == len(members) - 1
    finally:  # the seeded DC is shared by the session: put the member back
        dc._tool(["ldapmodify"], check=False, stdin=(
            "dn: %s\nchangetype: modify\nadd: member\nmember: %s\n" % (big, drop)).encode())
