#!/bin/sh
# SQLite's floor for a full import + full sync (issue 2): the time sqlite3
# itself takes to write the rows an idsync store holds after one, and
# nothing else: no file parsed, no flow evaluated, no row read back, no look-up.
#   bench/floor.sh STORE
# STORE is an idsync store right after `sync --full` (bench/core.sh calls
# this at that point). Its schema and, per table, its row count and mean
# column sizes are read; the same number of rows of the same sizes are then
# written into a new database, set-based (INSERT ... SELECT FROM
# generate_series, one transaction), three ways:
#   engine-schema   the store's own schema and pragmas (WAL, synchronous
#                   NORMAL, 16 KiB pages, 48 MiB cache), every index
#   tables-only     the same without one secondary index (WAL as before)
#   no-journal      tables only, journal_mode OFF, synchronous OFF: no crash
#                   safety at all
# Blobs are random bytes (randomblob), index keys random where idsync's are
# hashes (dn_key, hash) and sequential where its are (anchors, join values).
# Prints one line per way: "floor-WAY SECONDS USER SYS" (wall, CPU).
set -eu
store=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/idsync-floor.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

q() { sqlite3 -batch -noheader "$store" "$1"; }

q ".schema" | grep -v '^CREATE TABLE sqlite_sequence' > "$work/schema.sql"
grep -v '^CREATE INDEX' "$work/schema.sql" > "$work/tables.sql"

# one INSERT per connector space: its rows with their mean sizes, linked
# (mv_id) and pending (export_state) as many as the store has
{
    echo "BEGIN;"
    q "SELECT connector, count(*), CAST(avg(length(anchor)) AS INT), CAST(avg(length(dn)) AS INT),
              sum(dn_key IS NOT NULL), CAST(ifnull(avg(length(entry)), 0) AS INT),
              CAST(ifnull(avg(length(pending)), 0) AS INT), CAST(ifnull(avg(length(jkeys)), 0) AS INT),
              sum(mv_id <> 0), sum(export_state <> 0)
         FROM cs GROUP BY connector" |
        while IFS='|' read -r conn n alen dlen ndk elen plen jlen nmv nexp; do
            # anchors and DNs: a counter padded to the mean length (at least
            # 8 characters: unique up to 10^8 rows)
            [ -z "$alen" ] && alen=0
            [ -z "$dlen" ] && dlen=0
            echo "INSERT INTO cs(connector, mv_id, hash, flags, import_state, export_state, dn_key,
                                 anchor, type, dn, jkeys, entry, pending)
                  SELECT $conn, CASE WHEN value <= $nmv THEN value ELSE 0 END, random(), 0, 0,
                         CASE WHEN value <= $nexp THEN 1 ELSE 0 END,
                         CASE WHEN value <= $ndk THEN random() END,
                         CASE WHEN $alen > 0 THEN printf('%0*d', max($alen, 8), value) END, 'person',
                         CASE WHEN $dlen > 0 THEN printf('%0*d', max($dlen, 8), value) END,
                         CASE WHEN $jlen > 0 THEN randomblob($jlen) END,
                         CASE WHEN $elen > 0 THEN randomblob($elen) END,
                         CASE WHEN $plen > 0 THEN randomblob($plen) END
                  FROM generate_series(1, $n);"
        done
    q "SELECT count(*), CAST(ifnull(avg(length(entry)), 0) AS INT), CAST(ifnull(avg(length(jkeys)), 0) AS INT) FROM mv" |
        while IFS='|' read -r n elen jlen; do
            echo "INSERT INTO mv(type, created_run, updated_run, jkeys, entry)
                  SELECT 'person', 1, 1, randomblob(max($jlen, 1)), randomblob(max($elen, 1))
                  FROM generate_series(1, $n);"
        done
    q "SELECT space, attr, count(*), CAST(avg(length(value)) AS INT) FROM joinkey GROUP BY space, attr" |
        while IFS='|' read -r space attr n vlen; do
            echo "INSERT INTO joinkey(space, attr, value, obj)
                  SELECT $space, '$attr', printf('%0*d', max($vlen, 8), value), value
                  FROM generate_series(1, $n);"
        done
    echo "COMMIT;"
} > "$work/rows.sql"

way() {
    name=$1
    schema=$2
    journal=$3
    sync=$4
    rm -f "$work/floor.db" "$work/floor.db-wal" "$work/floor.db-shm"
    {
        echo "PRAGMA page_size = 16384;"
        echo "PRAGMA journal_mode = $journal;"
        echo "PRAGMA synchronous = $sync;"
        echo "PRAGMA cache_size = -49152;"
        cat "$schema"
        cat "$work/rows.sql"
    } > "$work/run.sql"
    /usr/bin/time -f "%e %U %S" -o "$work/time.txt" \
        sqlite3 -batch "$work/floor.db" < "$work/run.sql" > /dev/null
    echo "floor-$name $(cat "$work/time.txt")"
}

way engine-schema "$work/schema.sql" WAL NORMAL
way tables-only "$work/tables.sql" WAL NORMAL
way no-journal "$work/tables.sql" OFF OFF
