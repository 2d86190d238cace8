"""Without a sandbox, a tool that hides a new branch in ``packed-refs`` between lines of uet's
own namespace, under a header claiming the file is sorted, is still seen: the in-process ref
lister must not trust the header to skip a block it has not checked, since git lists every
line. The workstream ends ``tampered``, and what the evidence says was put back is what git
lists afterwards."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git, uet
from tests.e2e.helpers import last_run, setup_repo, states

NO_SANDBOX = '[sandbox]\nmode = "none"\n'
HIDE = (
    'G="$(git rev-parse --git-common-dir)"; H="$(git rev-parse HEAD)"; '
    '{ echo "# pack-refs with: peeled fully-peeled sorted "; '
    'echo "$H refs/uet/aaa"; echo "$H refs/heads/evil"; echo "$H refs/uet/zzz"; '
    'grep -v "^#" "$G/packed-refs" 2>/dev/null; } > "$G/packed-refs.new"; '
    'mv "$G/packed-refs.new" "$G/packed-refs"; echo x > x.txt'
)


def test_a_branch_hidden_in_a_falsely_sorted_packed_refs_is_tampering(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", config=NO_SANDBOX, workstreams={
        "evil": {"command": HIDE},
        "other": {"command": "echo o > o.txt"}})
    r = uet("run", "-j", "1", cwd=repo)
    assert states(repo)["evil"] == "quarantined", r.stdout + r.stderr
    reason = git(repo, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
                 "--grep=^evil: ", f"refs/uet/ledger/{last_run(repo)}").strip()
    assert reason == "tampered"
    assert "x.txt" not in git(repo, "ls-tree", "--name-only", "main")
    assert states(repo)["other"] == "committed"
    assert git(repo, "show", "main:o.txt") == "o"
    # What the evidence says of the hidden branch is what git lists afterwards: deleted only
    # when it is gone.
    said = git(repo, "show", f"refs/uet/ledger/{last_run(repo)}:evidence/evil/1/tampering.txt")
    listed = "refs/heads/evil" in git(repo, "for-each-ref", "--format=%(refname)")
    put_back = said.split("put back:", 1)[1]
    line = next(ln for ln in put_back.splitlines() if "refs/heads/evil" in ln)
    assert ("not restored" in line) == listed, said
