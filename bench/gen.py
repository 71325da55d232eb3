#!/usr/bin/python3
"""Generate a synthetic HR export: N people and M department groups.

    bench/gen.py --users 1000 --groups 20 --out DIR [--format csv|ldif|both]
                 [--seed 1] [--change K] [--suffix dc=example,dc=com]

Writes DIR/people.csv and DIR/departments.csv (CSV: header row, one person
per row keyed by employeeId; departments keyed by name with a
';'-separated `members` column of employeeIds) and/or DIR/people.ldif (LDIF
content records: inetOrgPerson users under ou=People, groupOfNames groups
under ou=Groups with member DNs).

--change K rewrites the same data with K deterministic changes spread over
the set: a third are title changes, a third department moves (the member
lists follow), a third renames (new sn, displayName and mail); used for
delta-cycle tests and benchmarks. Output is deterministic for a given seed.

--feed PREFIX (with --change K) also writes the same K changes as LDIF
change records, the way a directory's change feed appends them to an LDIF
source: PREFIX.fwd.ldif takes the unchanged set to the changed one (modify
of the person; a department move deletes the member from the old group and
adds it to the new one), PREFIX.back.ldif takes it back. Appending them in
turn to people.ldif gives delta cycles of K changes each.
Streams: memory grows with the number of groups, not people.
"""
import argparse
import os
import random

GIVEN = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "Jun",
         "Kofi", "Lena", "Mateo", "Nia", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
         "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoë"]
FAMILY = ["Abbott", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Haddad",
          "Ito", "Jensen", "Kowalski", "Lindqvist", "Müller", "Nakamura", "Okafor", "Petrov",
          "Quist", "Rossi", "Schmidt", "Tanaka", "Ulloa", "Varga", "Weber", "Xu", "Yilmaz",
          "Zhang"]
TITLES = ["Engineer", "Senior Engineer", "Analyst", "Manager", "Director", "Accountant",
          "Designer", "Recruiter", "Administrator", "Consultant"]


def person(i, rnd_state):
    r = random.Random(rnd_state * 1000003 + i)
    g = GIVEN[r.randrange(len(GIVEN))]
    f = FAMILY[r.randrange(len(FAMILY))]
    return {
        "employeeId": "E%07d" % i,
        "givenName": g,
        "sn": f,
        "displayName": "%s %s" % (g, f),
        "mail": "user%07d@example.com" % i,
        "title": TITLES[r.randrange(len(TITLES))],
        "dept": r.randrange(1 << 30),
    }


def apply_change(p, i, changed, ngroups):
    if i not in changed:
        return p
    kind = changed[i]
    if kind == 0:
        p["title"] = "Changed " + p["title"]
    elif kind == 1:
        p["dept"] = p["dept"] + 1
    else:
        p["sn"] = p["sn"] + "-Renamed"
        p["displayName"] = "%s %s" % (p["givenName"], p["sn"])
        p["mail"] = "user%07d.renamed@example.com" % i
    return p


def csv_field(v):
    if any(c in v for c in ',"\r\n'):
        return '"' + v.replace('"', '""') + '"'
    return v


def feed_records(a, i, old, new, ng, names):
    dn = "uid=%s,ou=People,%s" % (old["employeeId"].lower(), a.suffix)
    out = []
    mods = [(k, old[f], new[f]) for k, f in (("title", "title"), ("sn", "sn"),
                                             ("cn", "displayName"), ("displayName", "displayName"),
                                             ("mail", "mail")) if old[f] != new[f]]
    og, ng_ = old["dept"] % ng, new["dept"] % ng
    if og != ng_:
        mods.append(("ou", names[og], names[ng_]))
    if mods:
        out.append("dn: %s\nchangetype: modify\n" % dn +
                   "".join("replace: %s\n%s: %s\n-\n" % (k, k, v) for k, _, v in mods) + "\n")
    if og != ng_:
        for g, op in ((og, "delete"), (ng_, "add")):
            out.append("dn: cn=%s,ou=Groups,%s\nchangetype: modify\n%s: member\nmember: %s\n-\n\n"
                       % (names[g], a.suffix, op, dn))
    return out


def write_feed(a, changed, ng, names):
    with open(a.feed + ".fwd.ldif", "w", encoding="utf-8") as fwd, \
            open(a.feed + ".back.ldif", "w", encoding="utf-8") as back:
        for i in sorted(changed):
            old = person(i, a.seed)
            new = apply_change(person(i, a.seed), i, changed, ng)
            fwd.write("".join(feed_records(a, i, old, new, ng, names)))
            back.write("".join(feed_records(a, i, new, old, ng, names)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", choices=["csv", "ldif", "both", "none"], default="csv")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--change", type=int, default=0)
    ap.add_argument("--suffix", default="dc=example,dc=com")
    ap.add_argument("--feed")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ng = max(1, a.groups)
    changed = {}
    if a.change:
        step = max(1, a.users // a.change)
        for k in range(a.change):
            changed[(k * step + step // 2) % a.users] = k % 3
    members = [[] for _ in range(ng)]
    names = ["Department %03d" % g for g in range(ng)]

    csv_out = ldif_out = None
    if a.format in ("csv", "both"):
        csv_out = open(os.path.join(a.out, "people.csv"), "w", encoding="utf-8", newline="")
        csv_out.write("employeeId,givenName,sn,displayName,mail,department,title\r\n")
    if a.format in ("ldif", "both"):
        ldif_out = open(os.path.join(a.out, "people.ldif"), "w", encoding="utf-8")
        ldif_out.write("version: 1\n\n")
    for i in range(a.users):
        p = apply_change(person(i, a.seed), i, changed, ng)
        g = p["dept"] % ng
        members[g].append(p["employeeId"])
        if csv_out:
            row = [p["employeeId"], p["givenName"], p["sn"], p["displayName"], p["mail"],
                   names[g], p["title"]]
            csv_out.write(",".join(csv_field(v) for v in row) + "\r\n")
        if ldif_out:
            uid = p["employeeId"].lower()
            ldif_out.write(
                "dn: uid=%s,ou=People,%s\nobjectClass: inetOrgPerson\nuid: %s\n"
                "employeeNumber: %s\ncn: %s\ngivenName: %s\nsn: %s\ndisplayName: %s\n"
                "mail: %s\nou: %s\ntitle: %s\n\n"
                % (uid, a.suffix, uid, p["employeeId"], p["displayName"], p["givenName"],
                   p["sn"], p["displayName"], p["mail"], names[g], p["title"]))
    if csv_out:
        csv_out.close()
        with open(os.path.join(a.out, "departments.csv"), "w", encoding="utf-8",
                  newline="") as f:
            f.write("name,description,members\r\n")
            for g in range(ng):
                f.write("%s,%s,%s\r\n" % (csv_field(names[g]),
                                          csv_field("All people of " + names[g]),
                                          ";".join(members[g])))
    if a.feed:
        write_feed(a, changed, ng, names)
    if ldif_out:
        for g in range(ng):
            ldif_out.write("dn: cn=%s,ou=Groups,%s\nobjectClass: groupOfNames\ncn: %s\n"
                           "description: All people of %s\n" % (names[g], a.suffix, names[g],
                                                                 names[g]))
            for m in members[g]:
                ldif_out.write("member: uid=%s,ou=People,%s\n" % (m.lower(), a.suffix))
            ldif_out.write("\n")
        ldif_out.close()


if __name__ == "__main__":
    main()
