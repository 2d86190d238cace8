#!/bin/sh
# Fail the first $2 times (counted in the file $1, outside the worktree), then change a file.
n=$(cat "$1" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$1"
if [ "$n" -le "$2" ]; then
  echo "failing on try $n" >&2
  exit 1
fi
echo "succeeded on try $n" > flaky.txt
