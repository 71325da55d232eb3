#!/bin/sh
# Core benchmark (issue 2): CSV source -> LDIF target, N people in N/100 groups.
#   bench/core.sh IDSYNC N [csv|ldif]   (BENCH_GROUPS=M: M groups instead)
# With "ldif" the source is an LDIF file of the same people and groups
# (anchor: the DN), and each delta cycle's 100 changes are change records
# appended to it, as a directory's change feed delivers them: a delta read
# that does not read the file again, where a CSV snapshot must be.
# Measures full import, full sync (projection + provisioning), export, a delta
# cycle with 100 changes, peak RSS of each step and the store size per object.
# Reference run in the same session: sqlite3's own CSV .import of the same
# people file into a table (raw SQLite ingest of the same bytes), and
# bench/floor.sh on the store after the full sync: the time SQLite itself
# takes to write the rows import + sync leave, read or parsed from nothing.
# Prints one Markdown table; bench/RESULTS.md records the figures.
set -eu
idsync=$1
n=$2
source=${3:-csv}
here=$(cd "$(dirname "$0")" && pwd)
work=${BENCH_DIR:-$here/out}/core-$n
[ "$source" = csv ] || work=$work-$source
rm -rf "$work"
mkdir -p "$work/hr"
cd "$work"
groups=${BENCH_GROUPS:-$((n / 100))}
[ "$groups" -lt 1 ] && groups=1

case $source in
csv)
    /usr/bin/python3 "$here/gen.py" --users "$n" --groups "$groups" --out hr
    hr_conn="$(cat <<'EOF'
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
EOF
)"
    person_flow="employeeId: employeeId, givenName: givenName, sn: sn, displayName: displayName,
                mail: mail, department: department, title: title"
    group_flow="name: name, description: description, members: members"
    ;;
ldif)
    /usr/bin/python3 "$here/gen.py" --users "$n" --groups "$groups" --out hr --format both
    /usr/bin/python3 "$here/gen.py" --users "$n" --groups "$groups" --out . --format none \
        --change 100 --feed feed
    hr_conn="$(cat <<'EOF'
  hr:
    type: ldif
    settle: 0
    path: hr/people.ldif
    anchor: dn
    objects:
      person:
        object_class: inetOrgPerson
      department:
        object_class: groupOfNames
        references: { member: [person] }
EOF
)"
    person_flow="employeeId: employeeNumber, givenName: givenName, sn: sn, displayName: displayName,
                mail: mail, department: ou, title: title"
    group_flow="name: cn, description: description, members: member"
    ;;
*)
    echo "bench/core.sh: source is csv or ldif, not $source" >&2
    exit 2
    ;;
esac
cat > idsync.yaml <<YAML
store: sqlite:idsync.db
connectors:
$hr_conn
  dir:
    type: ldif
    settle: 0
    path: directory.ldif
    anchor: dn
    objects:
      user:
        object_class: inetOrgPerson
        attributes: [objectClass, uid, cn, sn, givenName, mail, ou, title]
      group:
        object_class: groupOfNames
        attributes: [objectClass, cn, description, member]
        references: { member: [user] }
metaverse:
  person:
    from:
      - connector: hr
        object: person
        project: true
        join: [ { ${person_flow%%,*} } ]
        flow: { $person_flow }
    to:
      - connector: dir
        object: user
        provision: true
        deprovision: delete
        flow:
          dn: '"uid=" .. lower(employeeId) .. ",ou=People,dc=example,dc=com"'
          objectClass: '{ "inetOrgPerson" }'
          uid: lower(employeeId)
          cn: displayName
          sn: sn
          givenName: givenName
          mail: mail
          ou: department
          title: title
  group:
    from:
      - { connector: hr, object: department, project: true, join: [ { ${group_flow%%,*} } ],
          flow: { $group_flow } }
    to:
      - { connector: dir, object: group, provision: true, deprovision: delete,
          flow: { dn: '"cn=" .. dn_escape(name) .. ",ou=Groups,dc=example,dc=com"',
                  objectClass: '{ "groupOfNames" }', cn: name, description: description,
                  member: members } }
safety:
  max_deletes: 0
  max_delete_percent: 0
YAML

# step LABEL CMD...: wall seconds, peak RSS (MB) and CPU seconds (user +
# system) of one command; CPU time is the steadier figure on a shared machine
step() {
    label=$1
    shift
    /usr/bin/time -f "%e %M %U %S" -o time.txt "$@" >/dev/null 2>step.err || {
        echo "bench: $label failed:" >&2
        cat step.err >&2
        exit 1
    }
    read -r secs kb usr sys < time.txt
    echo "$label $secs $((kb / 1024)) $usr $sys" >> results.txt
}

: > results.txt
step ref-sqlite-import sqlite3 ref.db ".mode csv" ".import hr/people.csv people"
step full-import "$idsync" -c idsync.yaml import hr --full
step full-sync "$idsync" -c idsync.yaml sync --full
# SQLite's floor: the same rows written set-based into a new database,
# three ways (bench/floor.sh); what import + sync cannot go below
sh "$here/floor.sh" idsync.db | while read -r way secs usr sys; do
    echo "$way $secs 0 $usr $sys" >> results.txt
done
step export "$idsync" -c idsync.yaml export dir
step confirm-cycle "$idsync" -c idsync.yaml cycle
# the initial load's dirty pages written out first: the delta cycles are
# not measured against the writeback of a 1.5 GB store
sync
# delta N: the files of the Nth delta cycle (0 the first). CSV: the whole
# export again, with 100 rows changed or back as they were; LDIF: the 100
# changes, or their reversal, appended as change records.
mkdir -p base changed
case $source in
csv)
    cp hr/*.csv base/
    /usr/bin/python3 "$here/gen.py" --users "$n" --groups "$groups" --out changed --change 100
    ;;
esac
delta() {
    case $source in
    csv) if [ $(($1 % 2)) = 1 ]; then cp base/*.csv hr/; else cp changed/*.csv hr/; fi ;;
    ldif) if [ $(($1 % 2)) = 1 ]; then cat feed.back.ldif >> hr/people.ldif; else cat feed.fwd.ldif >> hr/people.ldif; fi ;;
    esac
}
delta 0
step delta-cycle-100 "$idsync" -c idsync.yaml cycle
# Seven more delta cycles of 100 changes each (the two file sets in turn):
# one run is at the mercy of a WAL checkpoint or a slow fsync of the VM's
# disk; their median is the figure to compare.
for i in 1 2 3 4 5 6 7; do
    delta $i
    step delta-alt-$i "$idsync" -c idsync.yaml cycle
done
step delta-cycle-0 "$idsync" -c idsync.yaml cycle
# A CSV file changed less than 2 s before a read is compared row by row at
# the next read too (a change in the same clock tick could hide behind an
# equal modification time); an HR export lands minutes before a cycle.
sleep 2
step delta-cycle-0-reread "$idsync" -c idsync.yaml cycle
step delta-cycle-0-steady "$idsync" -c idsync.yaml cycle

objects=$((n + groups))
# the store as it stays: the write-ahead log folded into the database (a
# log of the last runs' frames is transient: checkpointed at 64 MiB)
sqlite3 idsync.db "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
db=$(stat -c %s idsync.db)
wal=0
[ -f idsync.db-wal ] && wal=$(stat -c %s idsync.db-wal)
# connector read state beside the store (CSV row tables)
state=0
[ -d idsync.db.state ] && state=$(du -sb idsync.db.state | cut -f1)
awk -v n="$objects" -v db="$db" -v wal="$wal" -v state="$state" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" '
    { t[$1] = $2; m[$1] = $3; c[$1] = $4 + $5 }
    /^delta-alt-/ { na++; alt[na] = $2; altc[na] = $4 + $5 }
    END {
        # median of the delta cycles (insertion sort of a few values)
        for (i = 2; i <= na; i++) for (j = i; j > 1 && alt[j - 1] > alt[j]; j--) { x = alt[j]; alt[j] = alt[j - 1]; alt[j - 1] = x }
        for (i = 2; i <= na; i++) for (j = i; j > 1 && altc[j - 1] > altc[j]; j--) { x = altc[j]; altc[j] = altc[j - 1]; altc[j - 1] = x }
        printf "| objects | %d |\n|---|---|\n", n
        printf "| load average at the end | %s |\n", load
        printf "| reference: sqlite3 .import of people.csv | %.2f s (%.2f s CPU) |\n", t["ref-sqlite-import"], c["ref-sqlite-import"]
        printf "| full import | %.2f s, %.2f s CPU (%.0f obj/s, %.0f obj/s of CPU, %d MB RSS) |\n", t["full-import"], c["full-import"], n / t["full-import"], n / c["full-import"], m["full-import"]
        printf "| full sync (projection + provisioning) | %.2f s, %.2f s CPU (%.0f obj/s, %.0f obj/s of CPU, %d MB RSS) |\n", t["full-sync"], c["full-sync"], n / t["full-sync"], n / c["full-sync"], m["full-sync"]
        printf "| full import + full sync | %.0f obj/s (%.0f obj/s of CPU) |\n", n / (t["full-import"] + t["full-sync"]), n / (c["full-import"] + c["full-sync"])
        printf "| SQLite floor of import + sync (bench/floor.sh: store rows written set-based, nothing read or parsed): engine schema, WAL | %.2f s (%.0f obj/s) |\n", t["floor-engine-schema"], n / t["floor-engine-schema"]
        printf "| — same rows, tables without a secondary index, WAL | %.2f s (%.0f obj/s) |\n", t["floor-tables-only"], n / t["floor-tables-only"]
        printf "| — same rows, no index, no journal, no sync (no crash safety) | %.2f s (%.0f obj/s) |\n", t["floor-no-journal"], n / t["floor-no-journal"]
        printf "| import + sync against the engine-schema floor | %.1f× |\n", (t["full-import"] + t["full-sync"]) / t["floor-engine-schema"]
        printf "| export (LDIF adds) | %.2f s, %.2f s CPU (%d MB RSS) |\n", t["export"], c["export"], m["export"]
        printf "| quiet cycle after export (confirming) | %.2f s, %.2f s CPU (%d MB RSS) |\n", t["confirm-cycle"], c["confirm-cycle"], m["confirm-cycle"]
        printf "| delta cycle, 100 changes (first) | %.2f s, %.2f s CPU (%d MB RSS) |\n", t["delta-cycle-100"], c["delta-cycle-100"], m["delta-cycle-100"]
        printf "| delta cycle, 100 changes: median of %d more (min-max) | %.3f s (%.2f-%.2f s), %.3f s CPU |\n", na, alt[int((na + 1) / 2)], alt[1], alt[na], altc[int((na + 1) / 2)]
        printf "| delta cycle, no change (files written < 2 s before the last read: rows compared) | %.2f s, %.2f s CPU |\n", t["delta-cycle-0"], c["delta-cycle-0"]
        printf "| delta cycle, no change (steady: files not opened) | %.2f s, %.2f s CPU |\n", t["delta-cycle-0-steady"], c["delta-cycle-0-steady"]
        peak = 0
        for (k in m) if (k != "ref-sqlite-import" && k !~ /^floor-/ && m[k] > peak) peak = m[k]
        printf "| peak RSS of any step | %d MB |\n", peak
        printf "| import ratio vs sqlite3 .import | %.2f (wall), %.2f (CPU) |\n", t["full-import"] / t["ref-sqlite-import"], c["full-import"] / c["ref-sqlite-import"]
        printf "| store size | %.0f bytes/object (db %d + wal %d + state files %d) |\n", (db + wal + state) / n, db, wal, state
    }' results.txt
