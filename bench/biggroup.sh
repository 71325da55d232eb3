#!/bin/sh
# Large groups (issue 2): N people in ONE group against the same people in
# N/100 groups of 100 (the reference, same session), CSV source -> LDIF.
#   bench/biggroup.sh IDSYNC N
# bench/core.sh runs each shape (full import, sync, export, confirming
# cycle); then every group loses every other member (N/2 membership changes
# either way) in one delta cycle, and gets them back in another.
# Prints one Markdown table; bench/RESULTS.md records the figures.
set -eu
idsync=$1
n=$2
here=$(cd "$(dirname "$0")" && pwd)
base=${BENCH_DIR:-$here/out}/biggroup-$n
rm -rf "$base"
mkdir -p "$base"

# members CSV IN OUT: every group's members, every other one dropped
halve() {
    /usr/bin/python3 - "$1" "$2" <<'PY'
import csv, sys
csv.field_size_limit(1 << 30)
with open(sys.argv[1], newline="") as f:
    rows = list(csv.reader(f))
col = rows[0].index("members")
for r in rows[1:]:
    r[col] = ";".join(r[col].split(";")[::2])
with open(sys.argv[2], "w", newline="") as f:
    csv.writer(f, lineterminator="\r\n").writerows(rows)
PY
}

# run SHAPE GROUPS: core.sh, then the two membership cycles
run() {
    shape=$1
    BENCH_GROUPS=$2 BENCH_DIR=$base/$shape "$here/core.sh" "$idsync" "$n" >"$base/$shape.md"
    dir=$(ls -d "$base/$shape"/core-*)
    cd "$dir"
    cp hr/departments.csv full-members.csv
    halve full-members.csv half-members.csv
    for step in halve restore; do
        if [ $step = halve ]; then cp half-members.csv hr/departments.csv; else cp full-members.csv hr/departments.csv; fi
        # a file changed in the last 2 s is compared row by row anyway;
        # wait so the read is the one an HR export minutes old gets
        sleep 2
        /usr/bin/time -f "%e %M %U %S" -o time.txt "$idsync" -c idsync.yaml cycle >/dev/null
        read -r secs kb usr sys <time.txt
        echo "members-$step $secs $((kb / 1024)) $usr $sys" >>results.txt
    done
    cd - >/dev/null
    cp "$dir/results.txt" "$base/$shape.txt"
}

run one 1
run many $((n / 100))

awk -v n="$n" '
    FNR == 1 { f++ }
    { t[f, $1] = $2; m[f, $1] = $3 }
    END {
        printf "| %d people | one group of %d | %d groups of 100 (reference) | ratio |\n", n, n, n / 100
        print "|---|---|---|---|"
        split("full-import full-sync export confirm-cycle members-halve members-restore", s, " ")
        for (i = 1; i <= 6; i++) {
            k = s[i]
            r = t[2, k] > 0 ? t[1, k] / t[2, k] : 0
            printf "| %s | %.2f s, %d MB | %.2f s, %d MB | %.2f |\n", k, t[1, k], m[1, k], t[2, k], m[2, k], r
        }
    }' "$base/one.txt" "$base/many.txt"
