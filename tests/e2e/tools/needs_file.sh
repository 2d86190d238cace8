#!/bin/sh
# Succeed (and write $2) only if $1 exists in the worktree: proves the dependency's change is
# visible to this workstream.
if [ ! -f "$1" ]; then
  echo "missing $1: the dependency's change is not here" >&2
  exit 3
fi
cat "$1" > "$2"
echo "saw $1" >> "$2"
