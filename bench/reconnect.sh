#!/bin/sh
# Reconnect benchmark (issue 5 at scale): N people in N/100 department groups
# are synced from an HR CSV into a CSV "cloud directory" that keeps our source
# anchor in externalId (its anchor carrier). Then the source is "rebuilt":
# every person gets a new key (as a restored Active Directory gives every
# object a new objectGUID); mails, names and groups stay.
#   bench/reconnect.sh IDSYNC N
# Measures, each step a new process (wall, CPU, peak RSS): the initial full
# cycle, the delta cycle the import guard stops, `reconnect hr --by mail`
# (the preview, with its plan file), `reconnect --apply`, and the cycle that
# writes the new anchors into the targets — and checks what an administrator
# checks: no target row created or deleted, every externalId rewritten.
# Prints one Markdown table; bench/RESULTS.md records the figures.
set -eu
idsync=$1
n=$2
here=$(cd "$(dirname "$0")" && pwd)
work=${BENCH_DIR:-$here/out}/reconnect-$n
rm -rf "$work"
mkdir -p "$work/hr" "$work/cloud"
cd "$work"
groups=$((n / 100))
[ "$groups" -lt 1 ] && groups=1
/usr/bin/python3 "$here/gen.py" --users "$n" --groups "$groups" --out hr

cat > idsync.yaml <<'YAML'
store: sqlite:idsync.db
connectors:
  hr:
    type: csv
    settle: 0
    objects:
      person:
        path: hr/people.csv
        key: employeeId
        attributes: [employeeId, givenName, sn, displayName, mail, department, title]
      department:
        path: hr/departments.csv
        key: name
        attributes: [name, description, members]
        references: { members: [person] }
  cloud:
    type: csv
    settle: 0
    objects:
      user:
        path: cloud/users.csv
        key: userName
        attributes: [userName, externalId, displayName, mail, title]
      group:
        path: cloud/groups.csv
        key: displayName
        attributes: [displayName, externalId, member]
        references: { member: [user] }
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ { sourceAnchor: employeeId }, { mail: mail } ]
        flow: { sourceAnchor: employeeId, displayName: displayName, mail: mail, title: title }
    to:
      - connector: cloud
        object: user
        provision: true
        deprovision: delete
        anchor_carrier: externalId
        join: [ { externalId: sourceAnchor }, { mail: mail } ]
        flow: { userName: mail, externalId: sourceAnchor, displayName: displayName, mail: mail,
                title: title }
  group:
    from:
      - { connector: hr, object: department, project: true, join: [ { name: name } ],
          flow: { name: name, members: members } }
    to:
      - { connector: cloud, object: group, provision: true, deprovision: delete,
          join: [ { displayName: name } ],
          flow: { displayName: name, externalId: name, member: members } }
YAML

step() {
    label=$1
    shift
    rc=0
    /usr/bin/time -f "%e %M %U %S" -o time.txt "$@" >"$label.out" 2>"$label.err" || rc=$?
    tail -n 1 time.txt > time1.txt # after "Command exited with non-zero status N"
    read -r secs kb usr sys < time1.txt
    echo "$label $secs $((kb / 1024)) $usr $sys $rc" >> results.txt
}

step initial-cycle "$idsync" -c idsync.yaml cycle --full
cp cloud/users.csv users.before.csv
# the rebuild: every person a new key, in the people file and in the groups
sed -i 's/^E\([0-9]\)/R\1/' hr/people.csv
sed -i 's/E\([0-9][0-9]*\)/R\1/g' hr/departments.csv
step guarded-cycle "$idsync" -c idsync.yaml cycle
step preview "$idsync" -c idsync.yaml reconnect hr --by mail --plan plan.json
step apply "$idsync" -c idsync.yaml reconnect --apply plan.json
step reanchor-cycle "$idsync" -c idsync.yaml cycle
step quiet-cycle "$idsync" -c idsync.yaml cycle

# what an administrator checks: the same target rows, each carrying its new anchor
/usr/bin/python3 - "$n" <<'PY' >> results.txt
import csv, sys
n = int(sys.argv[1])
before = {r["userName"]: r for r in csv.DictReader(open("users.before.csv", encoding="utf-8"))}
after = {r["userName"]: r for r in csv.DictReader(open("cloud/users.csv", encoding="utf-8"))}
moved = sum(1 for k, r in after.items() if k in before and r["externalId"] == "R" + before[k]["externalId"][1:])
same = all(before[k]["displayName"] == after[k]["displayName"] for k in after if k in before)
print("check rows_before=%d rows_after=%d reanchored=%d values_kept=%s" % (len(before), len(after), moved, same))
PY

awk -v n="$n" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
    $1 == "check" { check = $0; next }
    { t[$1] = $2; m[$1] = $3; c[$1] = $4 + $5; rc[$1] = $6; order[++k] = $1 }
    END {
        printf "| people | %d |\n|---|---|\n", n
        printf "| load average at the end | %s |\n", load
        for (i = 1; i <= k; i++) {
            s = order[i]
            printf "| %s | %.2f s, %.2f s CPU, %d MB RSS, exit %d |\n", s, t[s], c[s], m[s], rc[s]
        }
        sub(/^check /, "", check)
        printf "| target after | %s |\n", check
    }' results.txt
