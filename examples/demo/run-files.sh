#!/bin/sh
# make demo-files: an HR export (CSV) synced into a directory (LDIF change records),
# through a full cycle, then a few HR changes and a delta cycle.
#   examples/demo/run.sh [IDSYNC-BINARY]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
idsync=${1:-$top/build/idsync}
out=$top/demo-out/files
py=/usr/bin/python3

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$out"
mkdir -p "$out/hr"
cp "$here/hr-to-ldif.yaml" "$out/idsync.yaml"
cd "$out"

say "HR export: 300 people in 12 departments ($out/hr)"
"$py" "$top/bench/gen.py" --users 300 --groups 12 --out hr
head -4 hr/people.csv

say "idsync check"
"$idsync" -c idsync.yaml check

say "idsync cycle --dry-run (what the first cycle would do; nothing is written)"
"$idsync" -c idsync.yaml cycle --dry-run | tail -8

say "idsync cycle (full: import, sync, export, confirming import)"
"$idsync" -c idsync.yaml cycle --full

say "directory.ldif now holds $(grep -c '^dn:' directory.ldif) change records"
sed -n '1,16p' directory.ldif

say "HR changes: 6 people changed (title, department move, rename), one leaves, one joins"
"$py" "$top/bench/gen.py" --users 300 --groups 12 --out hr --change 6
"$py" - <<'PY'
rows = open("hr/people.csv", encoding="utf-8").read().splitlines()
gone = rows.pop(5).split(",")[0]
rows.append("E9000001,Nova,Lindqvist,Nova Lindqvist,nova.lindqvist@example.com,Department 003,Engineer")
open("hr/people.csv", "w", encoding="utf-8").write("\r\n".join(rows) + "\r\n")
deps = open("hr/departments.csv", encoding="utf-8").read().splitlines()
out = []
for line in deps:
    if line.startswith("Department 003,"):
        line = line + ";E9000001"
    line = line.replace(gone + ";", "").replace(";" + gone, "")
    out.append(line)
open("hr/departments.csv", "w", encoding="utf-8").write("\r\n".join(out) + "\r\n")
print("removed", gone, "- added E9000001")
PY

say "idsync pending directory (after import + sync, before export)"
"$idsync" -c idsync.yaml import hr >/dev/null
"$idsync" -c idsync.yaml sync >/dev/null
"$idsync" -c idsync.yaml pending directory | head -30

say "idsync cycle (delta)"
"$idsync" -c idsync.yaml cycle

say "the change records the delta cycle appended"
n=$(grep -c '^dn:' directory.ldif)
echo "directory.ldif: $n records in all"
tail -n 40 directory.ldif

say "idsync history"
"$idsync" -c idsync.yaml history

say "show the new person in the metaverse"
"$idsync" -c idsync.yaml show mv --where employeeId=E9000001
echo
echo "demo files are in $out (state: idsync.db; target: directory.ldif)"
