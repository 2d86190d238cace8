#!/usr/bin/env bash
# What a careful user does by hand with the git CLI for N workstreams, one after the other:
# for each one, a fresh detached worktree, run the tool, commit everything it changed,
# cherry-pick the commit onto an integration branch (kept in one scratch worktree), remove the
# worktree. The benchmark B1 times this against `uet run` on the same repository.
#
# usage: baseline_by_hand.sh REPO N [SCRATCH_DIR]   (prints the integration commit)
# The tool of workstream ws-NNNN is exactly the command uet runs for it (bench/common.py,
# append_tool): append a line to the workstream's own file.
set -euo pipefail

repo=$(cd "$1" && pwd)
n=$2
scratch=${3:-$(mktemp -d "${TMPDIR:-/tmp}/uet-by-hand.XXXXXX")}
mkdir -p "$scratch"

base=$(git -C "$repo" rev-parse HEAD)
branch="by-hand-integration-$$-$RANDOM"
integ="$scratch/integration"
git -C "$repo" worktree add -q -b "$branch" "$integ" "$base"

for i in $(seq 1 "$n"); do
    id=$(printf 'ws-%04d' "$i")
    wt="$scratch/$id"
    git -C "$repo" worktree add -q --detach "$wt" "$base"
    (cd "$wt" && sh -c "mkdir -p bench-ws && echo \"line from $id\" >> bench-ws/$id.txt")
    git -C "$wt" add -A
    git -C "$wt" commit -q -m "$id"
    sha=$(git -C "$wt" rev-parse HEAD)
    git -C "$integ" cherry-pick "$sha" >/dev/null
    git -C "$repo" worktree remove "$wt"
done

# Sanity: every workstream's line is on the integration branch.
count=$(git -C "$integ" ls-tree --name-only HEAD bench-ws/ | wc -l)
if [ "$count" -ne "$n" ]; then
    echo "by-hand baseline: expected $n files on the integration branch, found $count" >&2
    exit 1
fi
tip=$(git -C "$integ" rev-parse HEAD)
git -C "$repo" worktree remove "$integ"
git -C "$repo" branch -q -D "$branch"
echo "$tip"
