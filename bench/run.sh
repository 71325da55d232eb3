#!/bin/sh
# make bench: the core benchmark at 100k and 1M objects (issue 2).
# LDAP and SCIM benchmarks live in bench/ldap and bench/scim.
set -eu
idsync=$1
here=$(cd "$(dirname "$0")" && pwd)
for n in ${BENCH_SIZES:-100000 1000000}; do
    echo "## core benchmark, $n people"
    "$here/core.sh" "$idsync" "$n"
    echo
done
