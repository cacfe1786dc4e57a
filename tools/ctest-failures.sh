#!/bin/sh
# ctest-failures.sh BUILD_DIR - after a failed ctest run, print the last lines of each failed
# test's output again (from Testing/Temporary/LastTest.log), so that the end of a long log (what a
# CI summary keeps) says why each test failed.
dir=${1:-.}
log="$dir/Testing/Temporary/LastTest.log"
failed="$dir/Testing/Temporary/LastTestsFailed.log"
[ -f "$log" ] && [ -f "$failed" ] || exit 0
echo "==== output of the failed tests (last 60 lines each; the whole log: $log)"
sed 's/^[0-9]*://' "$failed" | while read -r name; do
    echo "---- $name"
    awk -v t="$name" '
        $0 ~ "^[0-9]+/[0-9]+ Testing: " { cur = ($3 == t) }
        cur { print }' "$log" | tail -n 60
done
