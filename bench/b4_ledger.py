"""A scripted N-workstream run ledger, written in seconds with one ``git fast-import``: what
``uet status`` reads at a scale a real run takes an hour to reach (B4's 10,000 workstreams).

The commits copy what the ledger writer records for a trivial workstream (``run: start`` with
``plan.json``, then per workstream ``none -> created -> validated -> queued -> applied ->
verified -> committed`` with the writer's subjects, bodies and trailers, one second apart per
workstream), a patch commit per workstream under ``refs/uet/patches/RUN/WS/1``, one state ref
per workstream and ``run: finish``. Every ``QUARANTINE_EVERY``-th workstream is quarantined
``verify-failed`` at ``applied`` instead, so reasons show. Used by B4 (``uet status`` at
10,000) and by tests/ledger/test_query_scale.py (a few hundred, checked against the full fold).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.common import bench_env, git

RUN = "20261201-120000-5ca1"
QUARANTINE_EVERY = 50
T0 = 1_764_590_400  # 2025-12-01 12:00:00 UTC
CHAIN = ("created", "validated", "queued", "applied", "verified", "committed")
BODY = {
    "created": "shell produced 1 changed path",
    "validated": "1 changed path within scope and limits",
    "queued": "no acceptance commands",
    "applied": "candidate {cand} = {tip} + patch {patch}",
    "verified": "candidate passed: no checks to run",
    "committed": "integration {tip} -> {cand}",
    "quarantined": "acceptance failed on the candidate (exit 1)",
}


def ws_name(i: int) -> str:
    return f"ws-{i:05d}"


def _data(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return b"data %d\n" % len(raw) + raw + b"\n"


def _message(subject: str, body: str, trailers: dict[str, str]) -> str:
    lines = "".join(f"{k}: {v}\n" for k, v in trailers.items())
    return f"{subject}\n\n{body}\n\n{lines}"


def plan_json(n: int) -> bytes:
    nodes = [{"depends_on": [], "estimate": None, "id": ws_name(i), "remaining": 1.0,
              "title": "", "wave": 0, "weight": 1.0} for i in range(1, n + 1)]
    return json.dumps({"critical_path": {"ids": [ws_name(1)], "length": 1.0}, "edges": [],
                       "jobs": 8, "lower_bound": n / 8, "nodes": nodes,
                       "order": [ws_name(i) for i in range(1, n + 1)]}, indent=2).encode()


def fake_oid(i: int, kind: int) -> str:
    return f"{kind:02x}{i:038x}"


def build(repo: Path, n: int, run: str = RUN) -> str:
    """Write run ``run`` with ``n`` workstreams into ``repo`` (which has ``main``); returns
    the run id."""
    base = git(repo, "rev-parse", "main^{commit}")
    committer = "uet <uet@localhost>"
    out: list[bytes] = []
    add = out.append
    add(b"blob\nmark :1\n" + _data(plan_json(n)))
    ledger = f"refs/uet/ledger/{run}"
    t = T0

    def commit(ref: str, mark: int, msg: str, when: int, parent: str | None,
               tree_from_plan: bool) -> None:
        add(f"commit {ref}\nmark :{mark}\ncommitter {committer} {when} +0000\n".encode())
        add(_data(msg))
        if parent:
            add(f"from {parent}\n".encode())
        if tree_from_plan:
            add(b"M 100644 :1 plan.json\n")
        add(b"\n")

    mark = 2
    commit(ledger, mark, _message("run: start", f"uet run {run} from {base[:12]} onto main; "
                                  f"{n} workstreams planned",
                                  {"Uet-Run": run, "Uet-Base": base, "Uet-Target": "main"}),
           t, None, True)
    prev = f":{mark}"
    states: list[tuple[str, str, str]] = []
    tip = base
    for i in range(1, n + 1):
        ws = ws_name(i)
        mark += 1
        commit(f"refs/uet/patches/{run}/{ws}/1", mark,
               _message(f"{ws}: append a line", "",
                        {"Uet-Workstream": ws, "Uet-Run": run, "Uet-Tool": "shell",
                         "Uet-Attempt": "1"}), t, base, False)
        patch_mark = f":{mark}"
        patch, cand = fake_oid(i, 1), fake_oid(i, 2)
        bad = i % QUARANTINE_EVERY == 0
        chain = (*CHAIN[:4], "quarantined") if bad else CHAIN
        frm = "none"
        for to in chain:
            tr = {"Uet-Run": run, "Uet-Workstream": ws, "Uet-Attempt": "1", "Uet-From": frm,
                  "Uet-To": to, "Uet-Patch": patch}
            if to in ("applied", "verified", "committed", "quarantined"):
                tr["Uet-Candidate"] = cand
            if to == "committed":
                tr["Uet-Integration"] = cand
            if to == "quarantined":
                tr["Uet-Reason"] = "verify-failed"
            body = BODY[to].format(cand=cand[:12], tip=tip[:12], patch=patch[:12])
            mark += 1
            commit(ledger, mark, _message(f"{ws}: {frm} -> {to}", body, tr), t, prev, True)
            prev = f":{mark}"
            frm = to
        if not bad:
            tip = cand
        states.append((chain[-1], ws, patch_mark))
        t += 1
    mark += 1
    commit(ledger, mark, _message("run: finish", f"{n} workstreams", {"Uet-Run": run}), t,
           prev, True)
    for state, ws, target in states:
        add(f"reset refs/uet/{state}/{run}/{ws}\nfrom {target}\n\n".encode())
    subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=repo,
                   input=b"".join(out) + b"done\n", env=bench_env(), check=True)
    return run
