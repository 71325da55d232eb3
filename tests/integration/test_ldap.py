"""The LDAP connector against a real OpenLDAP slapd, connector by connector
(tests/tools/conntool drives one connector: read-full, read-changes,
export, lookup, check; JSON lines out).

What is asserted is what an administrator would check: the entries in the
directory (read back with ldapsearch), the anchors and DNs idsync reports,
the watermark, and the error messages.
"""
import json
import os
import re
import subprocess
import threading
import time

import pytest

from fixtures.slapd import entry_ldif, server_loss_env, slapd, slapd_factory, wait_for  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CONNTOOL = os.environ.get("CONNTOOL", os.path.join(TOP, "build-test", "tests", "tools",
                                                   "conntool"))
SUFFIX = "dc=example,dc=org"
PEOPLE = "ou=People," + SUFFIX
GROUPS = "ou=Groups," + SUFFIX

pytestmark = pytest.mark.skipif(not os.path.exists(CONNTOOL),
                                reason="conntool not built (%s)" % CONNTOOL)


def ldap_config(server, path, extra="", objects=None, bind_dn=None, password_file=None,
                url=None):
    """Write a configuration with one ldap connector `dir` to `path`."""
    objects = objects or """
      user:
        base: {people}
        filter: (objectClass=inetOrgPerson)
        attributes: [uid, cn, sn, mail, description]
        object_classes: [inetOrgPerson]
      group:
        base: {groups}
        filter: (objectClass=groupOfNames)
        attributes: [cn, member]
        object_classes: [groupOfNames]
        references: {{ member: [user, group] }}
""".format(people=PEOPLE, groups=GROUPS)
    text = """store: sqlite:{dir}/idsync.db
connectors:
  dir:
    type: ldap
    url: {url}
    bind_dn: "{bind}"
    password_file: {pw}
{extra}
    objects:
{objects}
""".format(dir=os.path.dirname(path), url=url or server.url, bind=bind_dn or server.rootdn,
           pw=password_file or server.password_file,
           extra="\n".join("    " + l for l in extra.strip().split("\n")) if extra.strip() else "",
           objects=objects.rstrip("\n"))
    with open(path, "w") as f:
        f.write(text)
    return path


def conntool(config, *args, stdin=None, check=True, timeout=300):
    p = subprocess.run([CONNTOOL, "-c", config, "dir", *args], input=stdin,
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    return p


def lines(p):
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def read(config, mode="read-full", watermark=None):
    """(items, watermark) of a read."""
    args = [mode] + ([watermark] if watermark else [])
    out = lines(conntool(config, *args))
    wm = [o["watermark"] for o in out if "watermark" in o]
    items = [o for o in out if "op" in o or "error" in o]
    return items, (wm[0] if wm else None)


def export(config, changes, check=True):
    stdin = "".join(json.dumps(c) + "\n" for c in changes)
    res = lines(conntool(config, "export", stdin=stdin, check=check))
    return {r["tag"]: r for r in res if "tag" in r}


def add_change(dn, attrs, type_="user"):
    return {"op": "add", "type": type_, "dn": dn,
            "mods": [{"op": "add", "attr": k, "values": v if isinstance(v, list) else [v]}
                     for k, v in attrs.items()]}


def seed_people(server, n, groups=True):
    """n users (uid=uN) by slapadd, plus cn=all (every user) and cn=few."""
    path = os.path.join(server.dir, "people.ldif")
    with open(path, "w") as f:
        for i in range(n):
            f.write(entry_ldif("uid=u%d,%s" % (i, PEOPLE), {
                "objectClass": "inetOrgPerson", "uid": "u%d" % i, "cn": "User %d" % i,
                "sn": "S%d" % i, "mail": "u%d@example.org" % i}))
        if groups:
            f.write(entry_ldif("cn=all,%s" % GROUPS, {
                "objectClass": "groupOfNames", "cn": "all",
                "member": ["uid=u%d,%s" % (i, PEOPLE) for i in range(n)]}))
            f.write(entry_ldif("cn=few,%s" % GROUPS, {
                "objectClass": "groupOfNames", "cn": "few",
                "member": ["uid=u%d,%s" % (i, PEOPLE) for i in range(min(n, 3))]}))
    server.slapadd(path)


@pytest.fixture
def people(slapd_factory, tmp_path):
    """A running slapd seeded with 1,200 users and two groups, and its config."""
    s = slapd_factory(start=False)
    seed_people(s, 1200)
    s.start()
    cfg = ldap_config(s, str(tmp_path / "idsync.yaml"), extra="page_size: 100")
    return s, cfg


# ---- reading -----------------------------------------------------------------

def test_check_reports_openldap_facts(people):
    s, cfg = people
    out = conntool(cfg, "check").stdout
    assert "flavour: openldap" in out
    assert "anchor: entryUUID" in out
    assert "delta: syncrepl" in out
    assert "paged_results=yes" in out
    assert "objects.user: 1200" in out
    assert "objects.group: 2" in out
    assert re.search(r"schema: \d+ attribute names", out), out
    assert "unknown attributes" not in out, out
    # groupOfNames requires a member: check says how to allow empty groups
    assert ("empty groups.group: groupOfNames requires member, so a group without members can "
            "be neither created nor emptied") in out, out
    assert "empty groups.user" not in out, out
    with open(cfg) as f:
        text = f.read()
    with_stand_in = cfg.replace(".yaml", "-stand-in.yaml")
    with open(with_stand_in, "w") as f:
        f.write(text.replace("        object_classes: [groupOfNames]\n",
                             "        object_classes: [groupOfNames]\n"
                             "        empty_member: cn=nobody\n", 1))
    out = conntool(with_stand_in, "check").stdout
    assert "empty groups" not in out, out


def test_check_names_attributes_the_schema_does_not_know(people, tmp_path):
    """A misspelt attribute reads as absent on every object: `check` says
    which ones the server's schema does not know."""
    s, _ = people
    cfg = ldap_config(s, str(tmp_path / "typo.yaml"), objects="""
      user:
        base: {people}
        filter: (objectClass=inetOrgPerson)
        attributes: [uid, cn, sn, mial, employeNumber, userCertificate;binary, 2.5.4.4]
      group:
        base: {groups}
        filter: (objectClass=groupOfNames)
        attributes: [cn, member]
""".format(people=PEOPLE, groups=GROUPS))
    out = conntool(cfg, "check").stdout
    assert ("unknown attributes.user: mial, employeNumber (not in the server's schema: misspelt? "
            "every object would have none)") in out, out
    assert "unknown attributes.group" not in out, out


def test_full_read_paged_returns_every_entry_with_entryuuid_anchor(people):
    s, cfg = people
    items, wm = read(cfg)
    users = [i["entry"] for i in items if i["entry"]["type"] == "user"]
    groups = {i["entry"]["attributes"]["cn"][0]: i["entry"] for i in items
              if i["entry"]["type"] == "group"}
    assert len(users) == 1200  # 12 pages of 100
    assert len({u["anchor"] for u in users}) == 1200
    truth = {dn: a["entryUUID"][0] for dn, a in s.search(PEOPLE, "(uid=*)", ["entryUUID"])}
    for u in users:
        assert truth[u["dn"]] == u["anchor"]
    assert len(groups["all"]["attributes"]["member"]) == 1200
    assert wm.startswith("syncrepl:")


def test_bad_password_is_a_clear_error(people, tmp_path):
    s, _ = people
    bad = tmp_path / "bad.secret"
    bad.write_text("wrong\n")
    cfg = ldap_config(s, str(tmp_path / "bad.yaml"), password_file=str(bad))
    p = conntool(cfg, "read-full", check=False)
    assert p.returncode != 0
    assert "Invalid credentials" in p.stderr and s.rootdn in p.stderr
    assert "wrong" not in p.stderr  # never the secret


def test_unreachable_server_names_the_url(tmp_path, slapd):
    cfg = ldap_config(slapd, str(tmp_path / "x.yaml"), url="ldap://127.0.0.1:1",
                      extra="timeout: 2s\nreconnect_timeout: 0")
    p = conntool(cfg, "check", check=False)
    assert p.returncode != 0
    assert "ldap://127.0.0.1:1" in p.stderr


# ---- export -----------------------------------------------------------------

def test_export_add_modify_rename_move_delete(people):
    s, cfg = people
    changes = [
        add_change("uid=new1,%s" % PEOPLE, {"uid": "new1", "cn": "New One", "sn": "One",
                                            "mail": "new1@example.org"}),
        {"op": "modify", "type": "user", "dn": "uid=u0,%s" % PEOPLE,
         "mods": [{"op": "add", "attr": "mail", "values": ["second@example.org"]},
                  {"op": "replace", "attr": "sn", "values": ["Zero"]},
                  {"op": "delete", "attr": "description", "values": []}]},
        {"op": "modify", "type": "user", "dn": "uid=u1,%s" % PEOPLE,
         "new_dn": "uid=u1b,%s" % PEOPLE, "mods": [{"op": "replace", "attr": "cn",
                                                   "values": ["Renamed"]}]},
        {"op": "modify", "type": "user", "dn": "uid=u2,%s" % PEOPLE,
         "new_dn": "uid=u2,%s" % GROUPS, "mods": []},
        {"op": "delete", "type": "user", "dn": "uid=u3,%s" % PEOPLE},
        {"op": "modify", "type": "group", "dn": "cn=few,%s" % GROUPS,
         "mods": [{"op": "delete", "attr": "member", "reference": True,
                   "values": ["uid=u0,%s" % PEOPLE]},
                  {"op": "add", "attr": "member", "reference": True,
                   "values": ["uid=new1,%s" % PEOPLE]}]},
    ]
    res = export(cfg, changes)
    assert all(r["status"] == "ok" for r in res.values()), res
    new1 = s.get("uid=new1,%s" % PEOPLE)
    assert res[1]["anchor"] == new1["entryUUID"][0]
    assert res[1]["dn"] == "uid=new1,%s" % PEOPLE
    u0 = s.get("uid=u0,%s" % PEOPLE)
    assert sorted(u0["mail"]) == ["second@example.org", "u0@example.org"]
    assert u0["sn"] == ["Zero"]
    assert s.get("uid=u1,%s" % PEOPLE) is None
    assert s.get("uid=u1b,%s" % PEOPLE)["cn"] == ["Renamed"]
    assert res[3]["dn"] == "uid=u1b,%s" % PEOPLE
    assert s.get("uid=u2,%s" % GROUPS) is not None
    assert s.get("uid=u3,%s" % PEOPLE) is None
    few = s.get("cn=few,%s" % GROUPS)
    assert "uid=new1,%s" % PEOPLE in few["member"]
    assert "uid=u0,%s" % PEOPLE not in few["member"]
    assert len(few["member"]) == 3

    # the same export again (a crash before the results were recorded):
    # every change is found done, nothing fails, nothing doubles
    again = export(cfg, changes)
    assert all(r["status"] == "ok" for r in again.values()), again
    assert again[1]["anchor"] == res[1]["anchor"]
    assert sorted(s.get("uid=u0,%s" % PEOPLE)["mail"]) == ["second@example.org",
                                                           "u0@example.org"]


def test_export_add_of_someone_elses_entry_fails(people):
    s, cfg = people
    res = export(cfg, [add_change("uid=u5,%s" % PEOPLE, {"uid": "u5", "cn": "Not User 5",
                                                          "sn": "X"})])
    assert res[1]["status"] == "exists"
    assert "uid=u5" in res[1]["message"] and "cn" in res[1]["message"]


def test_missing_parent_error_or_created(people, tmp_path):
    s, cfg = people
    dn = "uid=deep,ou=A,ou=B,%s" % PEOPLE
    ch = add_change(dn, {"uid": "deep", "cn": "Deep", "sn": "D"})
    res = export(cfg, [ch])
    assert res[1]["status"] == "rejected"
    assert "parent ou=A,ou=B,%s does not exist" % PEOPLE in res[1]["message"]
    assert "create_parents" in res[1]["message"]
    cfg2 = ldap_config(s, str(tmp_path / "cp.yaml"), extra="create_parents: true")
    res = export(cfg2, [ch])
    assert res[1]["status"] == "ok", res
    assert s.get("ou=B,%s" % PEOPLE)["objectClass"] == ["organizationalUnit"]
    assert s.get(dn)["cn"] == ["Deep"]


def test_export_pipelined_many_adds(slapd, tmp_path):
    cfg = ldap_config(slapd, str(tmp_path / "w.yaml"), extra="window: 32")
    changes = [add_change("uid=p%d,%s" % (i, PEOPLE), {"uid": "p%d" % i, "cn": "P %d" % i,
                                                       "sn": "P"}) for i in range(2000)]
    res = export(cfg, changes)
    assert len(res) == 2000
    assert all(r["status"] == "ok" and r["anchor"] for r in res.values())
    assert len({r["anchor"] for r in res.values()}) == 2000
    assert len(slapd.search(PEOPLE, "(uid=p*)", ["1.1"])) == 2000


# ---- hostile values -----------------------------------------------------------

HOSTILE = ["star*", "paren(x)", "back\\slash", "#lead", " lead space", "trail space ",
           "comma,plus+quote\"lt<gt>semi;eq=", "caf\u00e9 \u65e5\u672c", "*)(uid=*"]


def test_hostile_values_round_trip(slapd, tmp_path):
    cfg = ldap_config(slapd, str(tmp_path / "h.yaml"))
    from_dn = []
    changes = []
    for i, v in enumerate(HOSTILE):
        rdn = "cn=" + dn_escape(v)
        from_dn.append("%s,%s" % (rdn, PEOPLE))
        changes.append(add_change(from_dn[-1], {"uid": "h%d" % i, "cn": v, "sn": v,
                                                "description": v}))
    res = export(cfg, changes)
    assert all(r["status"] == "ok" for r in res.values()), res
    items, _ = read(cfg)
    got = {i["entry"]["attributes"]["uid"][0]: i["entry"] for i in items
           if i["entry"]["type"] == "user"}
    for i, v in enumerate(HOSTILE):
        e = got["h%d" % i]
        assert e["attributes"]["description"] == [v]
        assert v in e["attributes"]["cn"]
        # lookup puts the value into a filter: it must match exactly this one
        out = lines(conntool(cfg, "lookup", "user", "description", v))
        assert out[0]["anchor"] == e["anchor"]
    # a filter-injection value matches nothing rather than everything
    assert conntool(cfg, "lookup", "user", "uid", "*").stdout.strip() == "null"
    assert conntool(cfg, "lookup", "user", "uid", "h1)(uid=*").stdout.strip() == "null"


def dn_escape(v):
    out = []
    for i, ch in enumerate(v):
        if ch in ',+"\\<>;=' or (i == 0 and ch in " #") or (i == len(v) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


# ---- syncrepl delta -----------------------------------------------------------

def test_syncrepl_delta_each_kind_of_change(people):
    s, cfg = people
    items, wm = read(cfg)
    anchors = {i["entry"]["dn"]: i["entry"]["anchor"] for i in items}
    s.add("uid=fresh,%s" % PEOPLE, {"objectClass": "inetOrgPerson", "uid": "fresh",
                                    "cn": "Fresh", "sn": "F"})
    s.modify_ldif("dn: uid=u10,%s\nchangetype: modify\nreplace: mail\nmail: changed@x\n" % PEOPLE)
    s.modify_ldif("dn: uid=u11,%s\nchangetype: modrdn\nnewrdn: uid=u11r\ndeleteoldrdn: 1\n"
                  % PEOPLE)
    s.modify_ldif("dn: uid=u12,%s\nchangetype: modrdn\nnewrdn: uid=u12\ndeleteoldrdn: 1\n"
                  "newsuperior: %s\n" % (PEOPLE, SUFFIX))  # moved out of the user base
    s.delete("uid=u13,%s" % PEOPLE)
    s.modify_ldif("dn: cn=few,%s\nchangetype: modify\nadd: member\nmember: uid=u20,%s\n"
                  % (GROUPS, PEOPLE))
    s.modify_ldif("dn: uid=u14,%s\nchangetype: modify\nreplace: description\n"
                  "description: x\n" % PEOPLE)
    delta, wm2 = read(cfg, "read-changes", wm)
    adds = {i["entry"]["dn"]: i["entry"] for i in delta if i["op"] == "add"}
    dels = {i["change"]["anchor"] for i in delta if i["op"] == "delete"}
    assert "uid=fresh,%s" % PEOPLE in adds
    assert adds["uid=u10,%s" % PEOPLE]["attributes"]["mail"] == ["changed@x"]
    assert adds["uid=u11r,%s" % PEOPLE]["anchor"] == anchors["uid=u11,%s" % PEOPLE]
    assert anchors["uid=u12,%s" % PEOPLE] in dels  # left the scope
    assert anchors["uid=u13,%s" % PEOPLE] in dels  # deleted (syncIdSet)
    assert "uid=u20,%s" % PEOPLE in adds["cn=few,%s" % GROUPS]["attributes"]["member"]
    assert "uid=u14,%s" % PEOPLE in adds
    assert not any(dn.startswith("uid=u3,") for dn in adds)  # untouched: not read
    assert len(delta) < 20
    assert wm2 != wm
    # nothing changed since: nothing read
    again, wm3 = read(cfg, "read-changes", wm2)
    assert again == []
    assert wm3.startswith("syncrepl:")


def test_syncrepl_cookie_too_old_requires_full_import(slapd_factory, tmp_path):
    s = slapd_factory(sessionlog=2)
    cfg = ldap_config(s, str(tmp_path / "s.yaml"))
    for i in range(6):
        s.add("uid=t%d,%s" % (i, PEOPLE), {"objectClass": "inetOrgPerson", "uid": "t%d" % i,
                                           "cn": "T", "sn": "T"})
    _, wm = read(cfg)
    for i in range(6):
        s.delete("uid=t%d,%s" % (i, PEOPLE))
    out = lines(conntool(cfg, "read-changes", wm))
    errors = [o for o in out if "error" in o]
    assert errors and errors[0]["error"] == "full-required", out
    assert "refresh" in errors[0]["message"] or "full" in errors[0]["message"]


# ---- connection loss ------------------------------------------------------------

def test_server_restart_during_full_read_is_survived(slapd_factory, tmp_path):
    s = slapd_factory(start=False)
    seed_people(s, 5000, groups=False)
    s.start()
    cfg = ldap_config(s, str(tmp_path / "r.yaml"), extra="page_size: 50\nreconnect_timeout: 30s")
    p = subprocess.Popen([CONNTOOL, "-c", cfg, "dir", "read-full"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=server_loss_env())
    first = p.stdout.readline()  # conntool is now blocked writing into the full pipe
    assert first.startswith("{")
    time.sleep(0.3)
    s.restart()
    rest = p.stdout.read()
    err = p.stderr.read()
    p.wait(120)
    assert p.returncode == 0, err
    out = [json.loads(l) for l in [first] + rest.splitlines() if l.strip()]
    dns = {o["entry"]["dn"] for o in out if "entry" in o}
    assert len(dns) == 5000  # nothing skipped (some may come twice)
    assert "ldap-reconnect" in err


def test_server_restart_during_export_is_survived(slapd, tmp_path):
    cfg = ldap_config(slapd, str(tmp_path / "e.yaml"), extra="window: 16\nreconnect_timeout: 30s")
    n = 3000
    p = subprocess.Popen([CONNTOOL, "-c", cfg, "dir", "export"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=server_loss_env())
    results = []
    reader = threading.Thread(target=lambda: results.extend(p.stdout.readlines()))
    reader.start()
    for i in range(n):
        p.stdin.write(json.dumps(add_change("uid=r%d,%s" % (i, PEOPLE),
                                            {"uid": "r%d" % i, "cn": "R", "sn": "R"})) + "\n")
        if i == n // 2:
            p.stdin.flush()
            wait_for(lambda: len(slapd.search(PEOPLE, "(uid=r*)", ["1.1"])) > 10, 30,
                     "the first adds")
            slapd.restart()
    p.stdin.close()
    reader.join(180)
    p.wait(60)
    res = [json.loads(l) for l in results if l.strip()]
    assert p.returncode == 0, p.stderr.read()
    assert len(res) == n
    failed = [r for r in res if r["status"] != "ok"]
    assert failed == []
    assert len(slapd.search(PEOPLE, "(uid=r*)", ["1.1"])) == n


# ---- TLS ---------------------------------------------------------------------------

def test_tls_verified_against_ca_file(slapd_factory, tmp_path):
    s = slapd_factory(tls=True)
    good = ldap_config(s, str(tmp_path / "good.yaml"), url=s.ldaps_url,
                       extra="ca_file: %s" % s.ca_file)
    assert "flavour: openldap" in conntool(good, "check").stdout
    # no CA given: the self-signed chain is refused
    nocafile = ldap_config(s, str(tmp_path / "noca.yaml"), url=s.ldaps_url,
                           extra="timeout: 5s\nreconnect_timeout: 0")
    p = conntool(nocafile, "check", check=False)
    assert p.returncode != 0
    # only when the configuration says so in so many words
    insecure = ldap_config(s, str(tmp_path / "insecure.yaml"), url=s.ldaps_url,
                           extra="tls_verify: false")
    assert "flavour: openldap" in conntool(insecure, "check").stdout
    starttls = ldap_config(s, str(tmp_path / "starttls.yaml"),
                           extra="starttls: true\nca_file: %s" % s.ca_file)
    assert "flavour: openldap" in conntool(starttls, "check").stdout


def _notice_of_disconnection_server():
    """A listener that answers a bind, then answers the next request with an
    RFC 4511 Notice of Disconnection (unavailable) and closes: a fault a real
    server sends only by timing (slapd while it shuts down)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    oid = b"1.3.6.1.4.1.1466.20036"
    ext = bytes([0x0a, 1, 52, 0x04, 0, 0x04, 0, 0x8a, len(oid)]) + oid
    body = bytes([0x02, 1, 0, 0x78, len(ext)]) + ext
    nod = bytes([0x30, len(body)]) + body
    bind_ok = bytes.fromhex("300c02010161070a010004000400")

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                if c.recv(4096):
                    c.sendall(bind_ok)
                    if c.recv(4096):
                        c.sendall(nod)
    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_notice_of_disconnection_is_a_lost_connection(slapd, tmp_path):
    srv = _notice_of_disconnection_server()
    try:
        cfg = ldap_config(slapd, str(tmp_path / "n.yaml"), extra="reconnect_timeout: 0",
                          url="ldap://127.0.0.1:%d" % srv.getsockname()[1])
        p = subprocess.run([CONNTOOL, "-c", cfg, "dir", "read-full"], capture_output=True,
                           text=True, timeout=60, env=server_loss_env())
    finally:
        srv.close()
    assert p.returncode != 0
    assert "Server is unavailable" in p.stderr and "127.0.0.1" in p.stderr, p.stderr
    assert "LeakSanitizer" not in p.stderr and "AddressSanitizer" not in p.stderr, p.stderr


def test_interrupted_full_import_stops_cleanly(slapd_factory, tmp_path):
    """SIGINT while a full read runs: the import stops as interrupted,
    without a hang or a leak, and a rerun completes it."""
    import signal

    from conftest import IDSYNC

    s = slapd_factory(start=False)
    seed_people(s, 20000, groups=False)
    s.start()
    cfg = ldap_config(s, str(tmp_path / "i.yaml"), extra="page_size: 10")
    p = subprocess.Popen([IDSYNC, "-c", cfg, "import", "dir", "--full"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    def reading():
        out = subprocess.run(["ss", "-tnpH", "state", "established",
                              "( dport = :%d )" % s.port], capture_output=True, text=True).stdout
        return ("pid=%d," % p.pid) in out or p.poll() is not None

    wait_for(reading, 60, "idsync to read from the server")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0, out + err  # 20,000 entries 10 a page take longer than this
    assert "interrupted" in out + err
    assert "Sanitizer" not in err, err
    r = subprocess.run([IDSYNC, "-c", cfg, "import", "dir", "--full"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "20000" in r.stdout, r.stdout
