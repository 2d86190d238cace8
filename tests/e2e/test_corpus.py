"""The real legacy corpus (``helpers.legacy_corpus()``): every file has an asserted
outcome, and `uet convert` + `uet plan` give a DAG with every converted bundle in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import uet
from tests.e2e.helpers import CORPUS
from uet_git.spec.convert import convert_paths, unresolved
from uet_git.spec.load import load_workstreams

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="legacy corpus not available")

OK = "converted"
WARN = "warned"
REFUSED = "refused"

TEMPLATE = "unrendered template"
PLANNING = "planning document"
SCHEMA = "a JSON Schema document, not a workstream"
PROSE = "is not a command; added to the prompt as an acceptance criterion"
DUP_DEPS = "depends_on: duplicates removed"
AMBIGUOUS = "may be a file or a directory: kept as both"

# file -> list of (status, id, reason or warning substrings). Every file of the corpus is here;
# test_table_covers_every_file fails when the corpus changes.
EXPECTED: dict[str, list[tuple[str, str | None, tuple[str, ...]]]] = {
    "example_multi.json": [(OK, "ws-core-lib", ()), (OK, "ws-api-layer", ()), (OK, "ws-cli", ())],
    "example_single.json": [(OK, "ws-hello-world", ())],
    "ws-01-hardcoded-path-index.json": [(OK, "ws-01-hardcoded-path-index", ())],
    "ws-02-section-mapping-config.json": [(OK, "ws-02-section-mapping-config", ())],
    "ws-03-refactor-meta-section.json": [(OK, "ws-03-refactor-meta-section", ())],
    "ws-04-refactor-gui-section.json": [(OK, "ws-04-refactor-gui-section", ())],
    "ws-05-refactor-infra-ci.json": [(OK, "ws-05-refactor-infra-ci", ())],
    "ws-06-refactor-aim-section.json": [(OK, "ws-06-refactor-aim-section", ())],
    "ws-07-refactor-pm-ccpm.json": [(OK, "ws-07-refactor-pm-ccpm", ())],
    "ws-08-refactor-aider-section.json": [(OK, "ws-08-refactor-aider-section", ())],
    "ws-09-refactor-spec-tools.json": [(OK, "ws-09-refactor-spec-tools", ())],
    # 'openspec/specs/validation-pipeline' etc. have no extension and no trailing '/'
    "ws-10-openspec-integration.json": [(WARN, "ws-10-openspec-integration", (AMBIGUOUS,))],
    "ws-11-spec-docs.json": [(OK, "ws-11-spec-docs", ())],
    "ws-12-error-shared-utils.json": [(WARN, "ws-12-error-shared-utils", (AMBIGUOUS,))],
    "ws-13-refactor-error-plugins.json": [(OK, "ws-13-refactor-error-plugins", ())],
    "ws-14-refactor-error-engine.json": [(OK, "ws-14-refactor-error-engine", ())],
    "ws-15-refactor-core-state.json": [(OK, "ws-15-refactor-core-state", ())],
    "ws-16-refactor-core-orchestration.json": [(OK, "ws-16-refactor-core-orchestration", ())],
    "ws-17-refactor-core-planning.json": [(OK, "ws-17-refactor-core-planning", ())],
    "ws-18-update-infrastructure-scripts.json": [
        (WARN, "ws-18-update-infrastructure-scripts",
         (f"{DUP_DEPS}: ws-10-openspec-integration, ws-12-error-shared-utils",)),
    ],
    "ws-19-test-suite-updates.json": [
        (WARN, "ws-19-test-suite-updates", (f"{DUP_DEPS}: ws-05-refactor-infra-ci",)),
    ],
    "ws-20-final-documentation-mapping.json": [
        (WARN, "ws-20-final-documentation-mapping", (PROSE, DUP_DEPS)),
    ],
    "ws-21-ci-gate-path-standards.json": [
        (WARN, "ws-21-ci-gate-path-standards",
         (PROSE, f"{DUP_DEPS}: ws-18-update-infrastructure-scripts")),
    ],
    "ws-22-pipeline-plus-phase0-schema.json": [
        (WARN, "ws-22-pipeline-plus-phase0-schema", (PROSE,)),
    ],
    "ws-23-pipeline-plus-phase1a-task-queue.json": [
        (WARN, "ws-23-pipeline-plus-phase1a-task-queue", (PROSE,)),
    ],
    "ws-24-pipeline-plus-phase1b-audit.json": [
        (WARN, "ws-24-pipeline-plus-phase1b-audit", (PROSE,)),
    ],
    "ws-25-pipeline-plus-phase2-patch-manager.json": [
        (WARN, "ws-25-pipeline-plus-phase2-patch-manager", (PROSE,)),
    ],
    "ws-26-pipeline-plus-phase3-prompt-engine.json": [
        (WARN, "ws-26-pipeline-plus-phase3-prompt-engine", (PROSE,)),
    ],
    "ws-27-pipeline-plus-phase4-validation.json": [
        (WARN, "ws-27-pipeline-plus-phase4-validation", (PROSE,)),
    ],
    "ws-28-pipeline-plus-phase5-adapters.json": [
        (WARN, "ws-28-pipeline-plus-phase5-adapters", (PROSE,)),
    ],
    "ws-29-pipeline-plus-phase6-router.json": [
        (WARN, "ws-29-pipeline-plus-phase6-router", (PROSE,)),
    ],
    "ws-30-pipeline-plus-phase7-integration.json": [
        (WARN, "ws-30-pipeline-plus-phase7-integration", (PROSE,)),
    ],
    **{
        f"ws-abs-{name}.json": [(REFUSED, None, (TEMPLATE, "not valid JSON"))]
        for name in (
            "001-tool-adapter", "002-state-store", "003-process-executor", "004-config-manager",
            "005-event-logger", "006-workstream-service", "007-file-store", "008-data-provider",
            "009-validation-suite", "010-error-handler", "011-metrics-collector",
            "012-dependency-resolver",
        )
    },
    # Planning documents: refused, not guessed into a runnable workstream (see legacy.py).
    "ws-next-001-github-project-integration.json": [
        (REFUSED, "ws-next-001-github-project-integration", (PLANNING, "no files_scope, tasks")),
    ],
    "ws-next-003-test-coverage-improvement.json": [
        (REFUSED, "ws-next-003-test-coverage-improvement", (PLANNING,)),
    ],
    "ws-next-004-refactor-2-execution.json": [
        (REFUSED, "ws-next-004-refactor-2-execution", (PLANNING,)),
    ],
    "ws-next-005-uet-framework-review.json": [
        (REFUSED, "ws-next-005-uet-framework-review", (PLANNING,)),
    ],
    "ws-test-001.json": [(OK, "ws-test-001", ())],
    "ws-test-pipeline.json": [(OK, "ws-test-pipeline", ())],
    "ws-uet-phase-a-quick-wins.json": [(OK, "ws-uet-phase-a-quick-wins", ())],
    "ws-uet-phase-b-patch-system.json": [(OK, "ws-uet-phase-b-patch-system", ())],
    "ws-uet-phase-c-orchestration.json": [(OK, "ws-uet-phase-c-orchestration", ())],
    "ws-uet-phase-d-adapters.json": [(OK, "ws-uet-phase-d-adapters", ())],
    "ws-uet-phase-e-resilience.json": [(OK, "ws-uet-phase-e-resilience", ())],
    # The corpus's schemas sit in a subdirectory that a recursive read visits.
    "schema/workstream.schema.json": [(REFUSED, None, (SCHEMA,))],
    "schema/uet/execution_request.v1.json": [(REFUSED, None, (SCHEMA,))],
    "schema/uet/phase_spec.v1.json": [(REFUSED, None, (SCHEMA,))],
    "schema/uet/task_spec.v1.json": [(REFUSED, None, (SCHEMA,))],
    "schema/uet/workstream_spec.v1.json": [(REFUSED, None, (SCHEMA,))],
}

CONVERTED_IDS = sorted(
    ws_id for items in EXPECTED.values() for status, ws_id, _ in items
    if status != REFUSED and ws_id
)


def test_table_covers_every_file() -> None:
    on_disk = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    on_disk.discard("README.md")
    assert on_disk == set(EXPECTED)
    assert len(CONVERTED_IDS) == 41


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_file_outcome(name: str) -> None:
    outcomes = convert_paths([CORPUS / name])
    got = [(o.status, o.workstream.id if o.workstream else None) for o in outcomes]
    want = [(status, ws_id if status != REFUSED else None) for status, ws_id, _ in EXPECTED[name]]
    assert got == want
    for o, (status, _, pieces) in zip(outcomes, EXPECTED[name], strict=True):
        text = o.refused if status == REFUSED else "\n".join(o.warnings)
        assert text is not None
        for piece in pieces:
            assert piece in text, (piece, text)
        if status == REFUSED:
            assert "\n" not in text and len(text) < 400
        else:  # the same file read directly (no conversion) gives the same workstream
            direct = load_workstreams([CORPUS / name])
            assert direct.errors == []
            assert o.workstream is not None
            assert o.workstream.model_dump() in [ws.model_dump() for ws in direct.workstreams]


def test_corpus_mapping_details() -> None:
    by_id = {o.workstream.id: o.workstream for o in convert_paths([CORPUS]) if o.workstream}
    ws = by_id["ws-hello-world"]
    assert ws.tool == "aider" and ws.retries == 2  # circuit_breaker.max_attempts 3
    assert ws.acceptance == ["pytest -q -k test_hello"]
    assert ws.prompt == "Tasks:\n1. Create a simple hello world module\n2. Add unit tests\n"
    assert ws.metadata["metadata"] == {"owner": "dev@example.com"}
    assert ws.metadata["doc_id"] == "DOC-CONFIG-EXAMPLE-SINGLE-140"
    assert by_id["ws-01-hardcoded-path-index"].tool == "codex"
    assert by_id["ws-01-hardcoded-path-index"].metadata["ccpm_issue"] == "N/A"
    assert "scripts/aim_*.py" in by_id["ws-06-refactor-aim-section"].scope.allow
    assert ".github/workflows/" in by_id["ws-05-refactor-infra-ci"].scope.allow
    assert {"src/utils", "src/utils/"} <= set(by_id["ws-12-error-shared-utils"].scope.allow)
    assert len(by_id["ws-18-update-infrastructure-scripts"].depends_on) == 17  # 19 - 2 duplicates
    assert by_id["ws-cli"].depends_on == ["ws-api-layer"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    work = tmp_path_factory.mktemp("corpus")
    proc = uet("convert", str(CORPUS), "-o", "out", cwd=work)
    return work, proc.stdout + proc.stderr, proc.returncode


def test_convert_command_reports_every_bundle(converted: tuple[Path, str, int]) -> None:
    work, out, code = converted
    assert "Traceback" not in out
    assert code == 2  # 21 files are refused, so the input was not all valid
    lines = out.splitlines()
    assert lines[-1] == (
        "41 converted (26 clean, 15 with warnings), 21 refused, 0 unresolved dependencies"
    )
    written = sorted(p.stem for p in (work / "out").glob("*.yaml"))
    assert written == CONVERTED_IDS
    refused = [line for line in lines if line.startswith("refused    ")]
    assert len(refused) == 21
    for name, items in EXPECTED.items():
        for status, ws_id, _ in items:
            if status == REFUSED:
                prefix = f"refused    {CORPUS / name}: "
                assert any(line.startswith(prefix) for line in refused), name
            else:
                label = "converted" if status == OK else "warned   "
                assert any(line.startswith(f"{label}  {ws_id}  (") for line in lines), ws_id


def test_plan_of_converted_corpus_lists_every_converted_bundle(
    converted: tuple[Path, str, int],
) -> None:
    work, _, _ = converted
    proc = uet("plan", "out", "--json", cwd=work)
    # Truthful outcome for this corpus: no converted bundle depends on a refused one (the
    # refused ws-next-004 is the only bundle naming a missing id, ws-next-002), so the 41
    # converted bundles form a complete DAG and the plan succeeds with all of them.
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    ids = [n["id"] for n in plan["nodes"]]
    assert sorted(ids) == CONVERTED_IDS
    assert len(ids) == 41
    pos = {ws_id: i for i, ws_id in enumerate(ids)}
    for src, dst in plan["edges"]:  # topological order respects every dependency
        assert pos[src] < pos[dst]
    assert ["ws-core-lib", "ws-api-layer"] in plan["edges"]
    assert plan["critical_path"]["length"] == 8


def test_raw_corpus_is_never_planned_without_its_refused_bundles(tmp_path: Path) -> None:
    # Reading the corpus directly: the refused files are errors, so neither validate nor plan
    # accepts the set (nothing is silently dropped).
    for cmd in ("validate", "plan"):
        proc = uet(cmd, str(CORPUS), cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert "Traceback" not in out
        for name in ("ws-abs-001-tool-adapter.json", "ws-next-004-refactor-2-execution.json"):
            assert name in out, (cmd, name)


def test_dependency_on_refused_corpus_bundle_is_reported_and_plan_fails(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CORPUS / "ws-abs-003-process-executor.json", src)
    shutil.copy(CORPUS / "ws-next-001-github-project-integration.json", src)
    (src / "mine.json").write_text(json.dumps({
        "id": "ws-mine", "files_scope": ["core/x.py"], "tasks": ["Use the executor"],
        "tool": "aider",
        "depends_on": ["ws-abs-003-process-executor", "ws-next-001-github-project-integration"],
    }))
    outcomes = convert_paths([src])
    assert [str(u).split(" depends on ")[1].split(",")[0] for u in unresolved(outcomes)] == [
        "'ws-abs-003-process-executor'", "'ws-next-001-github-project-integration'"
    ]
    proc = uet("convert", "in", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert ("unresolved dependency: ws-mine (in/mine.json) depends on "
            "'ws-abs-003-process-executor', which was refused (in/ws-abs-003-process-executor.json:"
            in proc.stdout)
    # the dependency is kept, so planning the output fails and names it
    plan = uet("plan", "out", cwd=tmp_path)
    assert plan.returncode == 2
    assert "ws-abs-003-process-executor" in plan.stderr and "ws-mine" in plan.stderr
    assert "Traceback" not in plan.stderr
    # and the loader refuses the raw inputs, naming the dependent too
    loaded = load_workstreams([src])
    mine = [str(e) for e in loaded.errors if str(e).startswith(f"{src / 'mine.json'}:ws-mine: ")]
    assert mine == [
        f"{src / 'mine.json'}:ws-mine: depends_on: {dep!r} could not be loaded (see the error for "
        f"{src / (dep + '.json')}); ws-mine cannot be planned without it"
        for dep in ("ws-abs-003-process-executor", "ws-next-001-github-project-integration")
    ]
