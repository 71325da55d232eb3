"""The SCIM connector against a real SCIM 2.0 service (SCIMMY, see
fixtures/scim.py), connector by connector through tests/tools/conntool
(check, read-full, export, lookup; JSON lines out).

What is asserted is what an administrator would check: what `check`
reports, the resources in the service afterwards (read back from the
service itself), the ids and names idsync reports, and the error messages.
Faults (429, 5xx, slow answers, dropped connections) are injected by the
proxy in front of the service; afterwards the service must hold exactly
what was exported: no duplicate, nothing lost.
"""
import json
import os
import subprocess
import time

import pytest

from fixtures.scim import (node_available, scim_factory, scim_proxy,  # noqa: F401
                           scim_service, scim_tls_proxy, scim_workdir)

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
CONNTOOL = os.environ.get("CONNTOOL", os.path.join(TOP, "build-test", "tests", "tools",
                                                   "conntool"))
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CONNTOOL), reason="conntool not built (%s)" % CONNTOOL),
    pytest.mark.skipif(not node_available(), reason="node/npm not installed"),
]

USER_ATTRS = ("[userName, externalId, displayName, name.givenName, name.familyName, emails, "
              "active, title, enterprise:department]")


def write_config(workdir, url, token_file=None, extra="", user_attrs=USER_ATTRS, name="c.yaml",
                 objects=None):
    objects = objects or """
      User:
        attributes: {ua}
      Group:
        attributes: [displayName, externalId, members]
        references: {{ members: [User, Group] }}
""".format(ua=user_attrs)
    auth = "    token_file: %s\n" % token_file if token_file else ""
    text = """store: sqlite:{dir}/idsync.db
connectors:
  cloud:
    type: scim
    url: {url}
{auth}{extra}    objects:
{objects}
""".format(dir=workdir, url=url, auth=auth,
           extra="".join("    " + l + "\n" for l in extra.strip().split("\n")) if extra.strip()
           else "", objects=objects.rstrip("\n"))
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def conntool(config, *args, stdin=None, check=True, env=None, timeout=600):
    e = dict(os.environ)
    e.setdefault("IDSYNC_SCIM_BACKOFF_MS", "20")
    if env:
        e.update(env)
    p = subprocess.run([CONNTOOL, "-c", config, "cloud", *args], input=stdin,
                       capture_output=True, text=True, timeout=timeout, env=e)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def lines(p):
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def user_add(uid, user_name=None, **extra):
    mods = [{"op": "add", "attr": "userName", "values": [user_name or "user%s" % uid]},
            {"op": "add", "attr": "externalId", "values": ["E%s" % uid]}]
    for k, v in extra.items():
        mods.append({"op": "add", "attr": k, "values": v if isinstance(v, list) else [v]})
    return {"op": "add", "type": "User", "mods": mods}


def export(config, changes, **kw):
    stdin = "".join(json.dumps(c) + "\n" for c in changes)
    res = lines(conntool(config, "export", stdin=stdin, **kw))
    return {r["tag"]: r for r in res}


def read_full(config):
    out = lines(conntool(config, "read-full"))
    return [o["entry"] for o in out if "entry" in o], [o for o in out if "error" in o]


# ---- discovery, check, auth ----------------------------------------------


def test_check_reports_discovery(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file)
    out = conntool(cfg, "check").stdout
    assert "patch: supported" in out
    assert "updates: PATCH" in out
    assert "bulk: supported" in out
    assert "filter: supported" in out
    assert "objects.User: resource type User, endpoint /Users" in out
    assert ENT in out  # the enterprise extension, from /ResourceTypes
    assert "objects.User.count: 0" in out
    assert "unknown attributes" not in out, out


def test_check_names_attributes_no_schema_defines(scim_service):
    """A misspelt SCIM attribute reads as absent on every object: `check`
    names those that no schema of the service (nor the core ones) defines."""
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file,
                       user_attrs="[userName, externalId, userNmae, name.givenNmae, "
                                  "enterprise:departmnt, enterprise:department, title]",
                       name="typo.yaml")
    out = conntool(cfg, "check").stdout
    assert ("unknown attributes.User: userNmae, name.givenNmae, enterprise:departmnt (in no "
            "schema of the service: misspelt? every object would have none)") in out, out
    assert "unknown attributes.Group" not in out, out


def test_check_without_patch_uses_put(scim_factory):
    svc = scim_factory(["--no-patch", "--no-bulk"])
    cfg = write_config(svc.workdir, svc.url, svc.token_file)
    out = conntool(cfg, "check").stdout
    assert "patch: not supported" in out
    assert "updates: GET + PUT" in out
    assert "bulk: not supported" in out
    # and updates really go through PUT
    res = export(cfg, [user_add(1, title="a")])
    uid = res[1]["anchor"]
    res = export(cfg, [{"op": "modify", "type": "User", "anchor": uid,
                        "mods": [{"op": "replace", "attr": "title", "values": ["b"]},
                                 {"op": "replace", "attr": "enterprise:department",
                                  "values": ["Ops"]}]}])
    assert res[1]["status"] == "ok", res
    u = svc.users_by()["E1"]
    assert u["title"] == "b"
    assert u[ENT]["department"] == "Ops"
    assert svc.stats()["byMethod"].get("PUT") == 1
    assert "PATCH" not in svc.stats()["byMethod"]


def test_bad_token_is_refused_with_a_clear_message(scim_service):
    bad = os.path.join(scim_service.workdir, "bad.token")
    with open(bad, "w") as f:
        f.write("wrong")
    cfg = write_config(scim_service.workdir, scim_service.url, bad)
    p = conntool(cfg, "check", check=False)
    assert p.returncode != 0
    assert "HTTP 401" in p.stderr
    assert "credentials" in p.stderr
    assert "wrong" not in p.stderr  # never the secret


def test_unreachable_service_names_the_url(scim_workdir):
    cfg = write_config(scim_workdir, "http://127.0.0.1:9/scim/v2", None,
                       extra="max_retries: 1\nconnect_timeout: 2s")
    p = conntool(cfg, "check", check=False)
    assert p.returncode != 0
    assert "127.0.0.1:9" in p.stderr
    assert "unreachable" in p.stderr


def test_tls_is_verified_unless_said_otherwise(scim_service, scim_tls_proxy):
    d = scim_service.workdir
    url = scim_tls_proxy.url
    assert url.startswith("https://127.0.0.1:")
    # a self-signed certificate is refused by default
    cfg = write_config(d, url, scim_service.token_file, name="t1.yaml", extra="max_retries: 0")
    p = conntool(cfg, "check", check=False)
    assert p.returncode != 0
    assert "certificate" in p.stderr.lower() and url.split("/scim")[0] in p.stderr
    # trusted through ca_file
    cfg = write_config(d, url, scim_service.token_file, name="t2.yaml",
                       extra="ca_file: %s" % scim_tls_proxy.cert)
    assert "patch: supported" in conntool(cfg, "check").stdout
    assert export(cfg, [user_add(1)])[1]["status"] == "ok"
    # or not verified, when written in so many words
    cfg = write_config(d, url, scim_service.token_file, name="t3.yaml", extra="tls_verify: false")
    assert "patch: supported" in conntool(cfg, "check").stdout


def test_basic_auth(scim_factory):
    svc = scim_factory(["--basic", "sync:pa:ss"], auth="none")
    pw = os.path.join(svc.workdir, "pw")
    with open(pw, "w") as f:
        f.write("pa:ss\n")
    cfg = write_config(svc.workdir, svc.url, None, extra="username: sync\npassword_file: %s" % pw)
    assert "auth: basic: ok" in conntool(cfg, "check").stdout
    assert export(cfg, [user_add(1)])[1]["status"] == "ok"
    pw2 = os.path.join(svc.workdir, "pw2")
    with open(pw2, "w") as f:
        f.write("nope")
    cfg2 = write_config(svc.workdir, svc.url, None, name="c2.yaml",
                        extra="username: sync\npassword_file: %s" % pw2)
    assert "HTTP 401" in conntool(cfg2, "check", check=False).stderr


def test_oauth_client_credentials_fetch_and_refresh(scim_factory):
    # tokens live 2 s: a run of several seconds must fetch new ones
    svc = scim_factory(["--oauth", "idsync:s3cr3t", "--token-ttl", "2"], auth="none")
    cfg = write_config(svc.workdir, svc.url, None, extra="""token_url: {base}/oauth/token
client_id: idsync
client_secret: env:SCIM_CLIENT_SECRET
concurrency: 2""".format(base=svc.base))
    env = {"SCIM_CLIENT_SECRET": "s3cr3t"}
    assert "token obtained" in conntool(cfg, "check", env=env).stdout
    changes = [user_add(i) for i in range(1, 301)]
    before = svc.stats()["tokens"]
    t0 = time.time()
    res = export(cfg, changes[:150], env=env)
    while time.time() - t0 < 2.5:
        time.sleep(0.1)
    res.update({k + 150: v for k, v in export(cfg, changes[150:], env=env).items()})
    assert all(r["status"] == "ok" for r in res.values())
    assert len(svc.users_by()) == 300
    assert svc.stats()["tokens"] - before >= 2
    bad = conntool(cfg, "check", env={"SCIM_CLIENT_SECRET": "wrong"}, check=False)
    assert bad.returncode != 0 and "OAuth token request" in bad.stderr


# ---- export and read -------------------------------------------------------


def test_export_and_read_back(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file)
    res = export(cfg, [
        user_add(1, "alice", **{"name.givenName": "Alice", "name.familyName": "Smith",
                                "active": "true", "enterprise:department": "R&D",
                                "displayName": "Alice Smith"}),
        dict(user_add(2, "bob"), mods=user_add(2, "bob")["mods"] + [
            {"op": "add", "attr": "emails", "json": True,
             "values": ['{"value":"bob@example.com","type":"work","primary":true}']}]),
    ])
    assert res[1]["status"] == "ok" and res[1]["dn"] == "alice"
    assert res[2]["status"] == "ok"
    alice, bob = res[1]["anchor"], res[2]["anchor"]
    g = export(cfg, [{"op": "add", "type": "Group", "mods": [
        {"op": "add", "attr": "displayName", "values": ["Team"]},
        {"op": "add", "attr": "externalId", "values": ["G1"]},
        {"op": "add", "attr": "members", "reference": True, "values": [alice, bob]}]}])
    assert g[1]["status"] == "ok" and g[1]["dn"] == "Team"

    stored = scim_service.users_by()
    assert stored["E1"]["name"] == {"givenName": "Alice", "familyName": "Smith"}
    assert stored["E1"]["active"] is True  # a boolean, from the schema
    assert stored["E1"][ENT]["department"] == "R&D"
    assert ENT in stored["E1"]["schemas"]
    assert stored["E2"]["emails"][0]["value"] == "bob@example.com"
    grp = scim_service.groups_by()["G1"]
    assert sorted(m["value"] for m in grp["members"]) == sorted([alice, bob])

    entries, errors = read_full(cfg)
    assert errors == []
    by = {e["anchor"]: e for e in entries}
    assert by[alice]["dn"] == "alice"
    assert by[alice]["attributes"]["enterprise:department"] == ["R&D"]
    assert by[alice]["attributes"]["name.givenName"] == ["Alice"]
    assert by[alice]["attributes"]["active"] == ["true"]
    assert json.loads(by[bob]["attributes"]["emails"][0])["value"] == "bob@example.com"
    assert sorted(by[g[1]["anchor"]]["attributes"]["members"]) == sorted([alice, bob])
    assert by[g[1]["anchor"]]["type"] == "Group"


def test_modify_rename_disable_members_delete(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file)
    res = export(cfg, [user_add(i, title="t") for i in range(1, 5)])
    ids = [res[i]["anchor"] for i in range(1, 5)]
    g = export(cfg, [{"op": "add", "type": "Group", "mods": [
        {"op": "add", "attr": "displayName", "values": ["G"]},
        {"op": "add", "attr": "externalId", "values": ["G1"]},
        {"op": "add", "attr": "members", "reference": True, "values": ids[:2]}]}])[1]["anchor"]
    res = export(cfg, [
        {"op": "modify", "type": "User", "anchor": ids[0], "mods": [
            {"op": "replace", "attr": "userName", "values": ["renamed"]},
            {"op": "delete", "attr": "title", "values": []}]},
        {"op": "modify", "type": "User", "anchor": ids[1], "mods": [
            {"op": "replace", "attr": "active", "values": ["false"]}]},
        {"op": "modify", "type": "Group", "anchor": g, "mods": [
            {"op": "add", "attr": "members", "reference": True, "values": ids[2:]},
            {"op": "delete", "attr": "members", "reference": True, "values": [ids[0]]}]},
        {"op": "delete", "type": "User", "anchor": ids[3]},
    ])
    assert all(r["status"] == "ok" for r in res.values()), res
    assert res[1]["dn"] == "renamed"
    u = scim_service.users_by()
    assert u["E1"]["userName"] == "renamed" and "title" not in u["E1"]
    assert u["E2"]["active"] is False
    assert "E4" not in u
    members = sorted(m["value"] for m in scim_service.groups_by()["G1"]["members"])
    # ids[3] was deleted: the service drops it from the group
    assert members == sorted([ids[1], ids[2]])
    # deleting what is already gone is a success; updating it says it vanished
    res = export(cfg, [{"op": "delete", "type": "User", "anchor": ids[3]},
                       {"op": "modify", "type": "User", "anchor": ids[3], "mods": [
                           {"op": "replace", "attr": "title", "values": ["x"]}]}])
    assert res[1]["status"] == "ok"
    assert res[2]["status"] == "not-found" and "vanished" in res[2]["message"]


def test_creates_and_deletes_go_in_bulk_requests(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file,
                       extra="bulk_size: 25\nconcurrency: 2")
    assert "creates_deletes: in /Bulk requests" in conntool(cfg, "check").stdout
    res = export(cfg, [user_add(i) for i in range(1, 121)])
    assert all(r["status"] == "ok" and r["anchor"] for r in res.values()), res
    assert len({r["anchor"] for r in res.values()}) == 120
    stored = scim_service.users_by()
    assert {res[i]["anchor"] for i in res} == {u["id"] for u in stored.values()}
    assert res[5]["anchor"] == stored["E5"]["id"]  # each result is its own object's id
    posts = scim_service.stats()["byMethod"]["POST"]
    assert posts <= 20  # 120 creates in requests of at most 25
    # a failing operation inside a bulk request fails alone, with its own message
    res = export(cfg, [user_add(200), user_add(201, "user5"), user_add(202)])
    assert res[1]["status"] == "ok" and res[3]["status"] == "ok"
    assert res[2]["status"] == "exists" and "user5" in res[2]["message"]
    # deletes too
    before = scim_service.stats()["byMethod"].get("DELETE", 0)
    res = export(cfg, [{"op": "delete", "type": "User", "anchor": stored["E%d" % i]["id"]}
                       for i in range(1, 61)])
    assert all(r["status"] == "ok" for r in res.values())
    assert len(scim_service.users_by()) == 62
    # the first ones leave alone while the window has room, the rest in /Bulk
    # most deletes travel in /Bulk; a few single DELETEs are seen in some runs
    # (open question noted for the SCIM connector's owner: which path falls
    # back), so the bound is "far fewer than one per object"
    assert scim_service.stats()["byMethod"].get("DELETE", 0) - before <= 10
    # and one request per change when told so
    cfg2 = write_config(scim_service.workdir, scim_service.url, scim_service.token_file,
                        name="c2.yaml", extra="bulk: no")
    posts = scim_service.stats()["byMethod"]["POST"]
    export(cfg2, [user_add(i) for i in range(300, 310)])
    assert scim_service.stats()["byMethod"]["POST"] - posts == 10


def test_large_member_change_is_chunked(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file,
                       extra="patch_chunk: 50")
    res = export(cfg, [user_add(i) for i in range(1, 231)])
    ids = [res[i]["anchor"] for i in range(1, 231)]
    g = export(cfg, [{"op": "add", "type": "Group", "mods": [
        {"op": "add", "attr": "displayName", "values": ["Big"]},
        {"op": "add", "attr": "externalId", "values": ["GB"]}]}])[1]["anchor"]
    before = scim_service.stats()["byMethod"].get("PATCH", 0)
    r = export(cfg, [{"op": "modify", "type": "Group", "anchor": g, "mods": [
        {"op": "add", "attr": "members", "reference": True, "values": ids}]}])
    assert r[1]["status"] == "ok"
    assert scim_service.stats()["byMethod"]["PATCH"] - before == 5  # 230 / 50
    assert len(scim_service.groups_by()["GB"]["members"]) == 230
    r = export(cfg, [{"op": "modify", "type": "Group", "anchor": g, "mods": [
        {"op": "delete", "attr": "members", "reference": True, "values": ids[:120]}]}])
    assert r[1]["status"] == "ok"
    assert sorted(m["value"] for m in scim_service.groups_by()["GB"]["members"]) == sorted(ids[120:])
    # members are read per group (the listing excludes them)
    entries, _ = read_full(cfg)
    grp = [e for e in entries if e["type"] == "Group"][0]
    assert sorted(grp["attributes"]["members"]) == sorted(ids[120:])


def test_paged_read_with_prefetch(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file,
                       extra="page_size: 7\nconcurrency: 4")
    res = export(cfg, [user_add(i) for i in range(1, 101)])
    assert all(r["status"] == "ok" for r in res.values())
    gets_before = scim_service.stats()["byMethod"].get("GET", 0)
    entries, errors = read_full(cfg)
    assert errors == []
    users = [e for e in entries if e["type"] == "User"]
    assert len(users) == 100
    assert len({e["anchor"] for e in users}) == 100
    # 15 pages of users, at least, were asked for
    assert scim_service.stats()["byMethod"]["GET"] - gets_before >= 15


def test_service_capping_page_size(scim_factory):
    svc = scim_factory(["--max-results", "10"])
    cfg = write_config(svc.workdir, svc.url, svc.token_file, extra="page_size: 25")
    export(cfg, [user_add(i) for i in range(1, 48)])
    entries, _ = read_full(cfg)
    assert len({e["anchor"] for e in entries if e["type"] == "User"}) == 47


def test_hostile_values_and_lookup(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file)
    nasty = ['q"uote', 'back\\slash', 'x" or userName pr or "', 'ünï cødé', "a]b[c"]
    res = export(cfg, [{"op": "add", "type": "User", "mods": [
        {"op": "add", "attr": "userName", "values": ["n%d" % i]},
        {"op": "add", "attr": "externalId", "values": [v]}]} for i, v in enumerate(nasty)])
    assert all(r["status"] == "ok" for r in res.values()), res
    for i, v in enumerate(nasty):
        out = lines(conntool(cfg, "lookup", "User", "externalId", v))
        assert out[0]["attributes"]["externalId"] == [v]
        assert out[0]["anchor"] == res[i + 1]["anchor"]
    # userName is matched case-insensitively by the service (RFC 7643)
    out = lines(conntool(cfg, "lookup", "User", "userName", "N0"))
    assert out[0]["anchor"] == res[1]["anchor"]
    assert conntool(cfg, "lookup", "User", "externalId", "absent").stdout.strip() == "null"
    out = lines(conntool(cfg, "lookup", "User", "id", res[2]["anchor"]))
    assert out[0]["dn"] == "n1"


def test_errors_name_the_attribute_and_the_holder(scim_service):
    cfg = write_config(scim_service.workdir, scim_service.url, scim_service.token_file)
    first = export(cfg, [user_add(1, "taken")])[1]["anchor"]
    res = export(cfg, [
        user_add(2, "TAKEN"),  # 409 uniqueness (case-insensitive userName)
        {"op": "add", "type": "User", "mods": [  # 400 from the service
            {"op": "add", "attr": "externalId", "values": ["E3"]}]},
        user_add(4, "ok", active="perhaps"),  # refused before sending
        {"op": "add", "type": "Group", "mods": [
            {"op": "add", "attr": "displayName", "values": ["G"]},
            {"op": "add", "attr": "members", "reference": True, "values": ["no-such-id"]}]},
    ])
    assert res[1]["status"] == "exists"
    assert "userName" in res[1]["message"] and "uniqueness" in res[1]["message"]
    assert first in res[1]["message"] and "externalId E1" in res[1]["message"]
    assert res[2]["status"] == "rejected" and "userName" in res[2]["message"]
    assert res[2]["message"].count("HTTP 400") == 1
    assert res[3]["status"] == "bad-input" and "active" in res[3]["message"]
    assert res[4]["status"] == "rejected" and "members" in res[4]["message"]
    assert not any(r["retryable"] for r in res.values())
    assert set(scim_service.users_by()) == {"E1"}


# ---- faults ------------------------------------------------------------------


FAULTS = [
    ("status-429", dict(mode="status", status=429, retryAfter="1", every=4, count=12)),
    ("status-429-date", dict(mode="status", status=429, retryAfter="Thu, 01 Jan 1970 00:00:00 GMT",
                             every=5, count=10)),
    ("status-503", dict(mode="status", status=503, every=3, count=20)),
    ("status-500", dict(mode="status", status=500, every=3, count=20)),
    ("after-500", dict(mode="after-status", status=500, every=3, count=20)),
    ("drop", dict(mode="drop", every=3, count=20)),
    ("drop-partial", dict(mode="drop-partial", every=4, count=15)),
    ("slow", dict(mode="slow", delayMs=2500, every=2, count=6)),
]


@pytest.mark.parametrize("name,fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_export_under_faults_no_duplicate_no_loss(scim_service, scim_proxy, name, fault):
    cfg = write_config(scim_service.workdir, scim_proxy.url, scim_service.token_file,
                       extra="timeout: 1s\nmax_retries: 8\nconcurrency: 4")
    n = 60
    mode = fault.pop("mode")
    scim_proxy.fault(mode, **fault)
    res = export(cfg, [user_add(i) for i in range(1, n + 1)])
    assert len(res) == n
    bad = [r for r in res.values() if r["status"] != "ok"]
    assert bad == [], bad
    assert scim_proxy.stats()["faults"] > 0
    stored = scim_service.users_by()  # asserts no duplicate externalId
    assert len(stored) == n
    assert {res[i]["anchor"] for i in res} == {u["id"] for u in stored.values()}

    # updates and member changes under the same fault
    ids = [res[i]["anchor"] for i in range(1, n + 1)]
    scim_proxy.clear()
    g = export(cfg, [{"op": "add", "type": "Group", "mods": [
        {"op": "add", "attr": "displayName", "values": ["G"]},
        {"op": "add", "attr": "externalId", "values": ["G1"]}]}])[1]["anchor"]
    scim_proxy.fault(mode, **fault)
    changes = [{"op": "modify", "type": "Group", "anchor": g, "mods": [
        {"op": "add", "attr": "members", "reference": True, "values": ids[k:k + 10]}]}
        for k in range(0, n, 10)]
    changes += [{"op": "modify", "type": "User", "anchor": ids[i], "mods": [
        {"op": "replace", "attr": "title", "values": ["T%d" % i]}]} for i in range(n)]
    r2 = export(cfg, changes)
    assert [r for r in r2.values() if r["status"] != "ok"] == []
    scim_proxy.clear()
    assert sorted(m["value"] for m in scim_service.groups_by()["G1"]["members"]) == sorted(ids)
    assert all(u["title"] == "T%d" % (int(k[1:]) - 1) for k, u in scim_service.users_by().items())


def test_lost_create_without_anchor_carrier_is_not_resent(scim_service, scim_proxy):
    cfg = write_config(scim_service.workdir, scim_proxy.url, scim_service.token_file,
                       extra="timeout: 1s")
    scim_proxy.fault("drop", methods=["POST"], count=1)
    res = export(cfg, [{"op": "add", "type": "User", "mods": [
        {"op": "add", "attr": "userName", "values": ["nocarrier"]}]}])
    assert res[1]["status"] != "ok"
    assert res[1]["retryable"] is True
    assert "not sent again" in res[1]["message"]
    assert len(scim_service.dump()["Users"]) == 1  # the service did create it, once


def test_throttling_slows_down_and_gives_up_cleanly(scim_service, scim_proxy):
    cfg = write_config(scim_service.workdir, scim_proxy.url, scim_service.token_file,
                       extra="max_retries: 2")
    scim_proxy.fault("status", status=429, retryAfter="0", methods=["POST"])
    res = export(cfg, [user_add(i) for i in range(1, 4)])
    assert all(r["status"] != "ok" and r["retryable"] for r in res.values())
    assert all("429" in r["message"] for r in res.values())
    assert scim_service.dump()["Users"] == []


def test_bulk_results_out_of_order_reach_their_own_objects(scim_proxy, scim_service):
    """A /Bulk answer whose results come in another order than the request's
    operations: each create still gets its own object's id (by bulkId)."""
    cfg = write_config(scim_service.workdir, scim_proxy.url, scim_service.token_file,
                       extra="bulk_size: 10\nconcurrency: 1")
    conntool(cfg, "check")  # discovery: its GETs are not counted below
    gets = scim_service.stats()["byMethod"].get("GET", 0)
    scim_proxy.fault("reverse-bulk", path="/Bulk")
    res = export(cfg, [user_add(i) for i in range(1, 41)])
    assert scim_proxy.stats()["byMode"].get("reverse-bulk", 0) >= 3
    assert all(r["status"] == "ok" for r in res.values()), res
    # matched by bulkId: no create is treated as lost and looked up afterwards
    # (a look-up by externalId would find the right id too, more slowly)
    assert scim_service.stats()["byMethod"].get("GET", 0) - gets <= 4
    stored = scim_service.users_by()
    for i in range(1, 41):
        assert res[i]["anchor"] == stored["E%d" % i]["id"], (i, res[i])
