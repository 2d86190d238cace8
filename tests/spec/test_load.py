"""Loading workstream files: formats, directories, and every kind of bad input reported as one
line per problem, all at once, never an exception."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from uet_git.errors import UetError
from uet_git.spec.load import (
    LoadResult,
    SpecIssue,
    default_paths,
    load_config,
    load_workstreams,
    samples_dir,
    strip_leading_comments,
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(*paths: Path) -> LoadResult:
    return load_workstreams(list(paths))


def ids(result: LoadResult) -> list[str]:
    return [ws.id for ws in result.workstreams]


def errors(result: LoadResult) -> list[str]:
    lines = [str(e) for e in result.errors]
    for line in lines:
        assert "\n" not in line and "\r" not in line and line.isprintable(), repr(line)
        assert len(line) < 2000
    return lines


# -- formats ---------------------------------------------------------------------------------


def test_yaml_single_list_and_multi_document(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml", "id: a\ntool: shell\ncommand: echo a\n")
    write(tmp_path / "many.yml", "- id: b\n- id: c\n  depends_on: [b]\n")
    write(tmp_path / "docs.yaml", "id: d\n---\n- id: e\n- id: f\n")
    r = load(tmp_path)
    assert errors(r) == []
    assert ids(r) == ["d", "e", "f", "b", "c", "a"]  # sorted file order, then file order
    assert r.workstreams[0].source == str(tmp_path / "docs.yaml")


def test_json_single_list_and_leading_comment(tmp_path: Path) -> None:
    write(tmp_path / "a.json", json.dumps({"id": "a", "prompt": "x"}))
    write(tmp_path / "b.json", json.dumps([{"id": "b"}, {"id": "c"}]))
    write(tmp_path / "c.json", '/* DOC_ID: X */\n// another\n{"id": "d"}\n')
    r = load(tmp_path)
    assert errors(r) == []
    assert ids(r) == ["a", "b", "c", "d"]


def test_strip_leading_comments_keeps_line_numbers() -> None:
    text = "/* a\n b */\n// c\n{\"x\": 1}"
    out = strip_leading_comments(text)
    assert out.count("\n") == text.count("\n")
    assert json.loads(out) == {"x": 1}
    assert strip_leading_comments('{"a": "/* not a comment */"}') == '{"a": "/* not a comment */"}'


def test_toml_table_and_array_of_tables(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'id = "a"\ntool = "shell"\n[scope]\nallow = ["src/"]\n')
    write(tmp_path / "b.toml", '[[workstream]]\nid = "b"\n\n[[workstream]]\nid = "c"\n'
                               'depends_on = ["b"]\n')
    r = load(tmp_path)
    assert errors(r) == []
    assert ids(r) == ["a", "b", "c"]
    assert r.workstreams[0].scope.allow == ["src/"]


def test_toml_array_with_stray_key_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path / "b.toml", 'title = "x"\n[[workstream]]\nid = "b"\n')
    r = load(f)
    assert ids(r) == ["b"]
    assert errors(r) == [f"{f}: title: unexpected top-level key next to [[workstream]]"]


# -- directories -----------------------------------------------------------------------------


def test_directory_recursive_sorted_skipping_hidden_and_other_files(tmp_path: Path) -> None:
    write(tmp_path / "b" / "z.yaml", "id: bz\n")
    write(tmp_path / "b" / "a.yaml", "id: ba\n")
    write(tmp_path / "a.yaml", "id: a\n")
    write(tmp_path / "c" / "d" / "e.json", '{"id": "cde"}')
    write(tmp_path / ".hidden" / "x.yaml", "id: hidden-dir\n")
    write(tmp_path / ".x.yaml", "id: hidden-file\n")
    write(tmp_path / "notes.md", "# not a workstream\n")
    write(tmp_path / "data.csv", "a,b\n")
    r = load(tmp_path)
    assert errors(r) == []
    assert ids(r) == ["a", "ba", "bz", "cde"]


def test_same_file_twice_is_read_once(tmp_path: Path) -> None:
    f = write(tmp_path / "a.yaml", "id: a\n")
    r = load(tmp_path, f)
    assert errors(r) == [] and ids(r) == ["a"]


def test_symlinked_directory_not_followed(tmp_path: Path) -> None:
    write(tmp_path / "real" / "a.yaml", "id: a\n")
    (tmp_path / "real" / "loop").symlink_to(tmp_path / "real")
    r = load(tmp_path / "real")
    assert errors(r) == [] and ids(r) == ["a"]


def test_missing_path_empty_dir_and_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    md = write(tmp_path / "x.md", "id: a\n")
    r = load(tmp_path / "nope", tmp_path / "empty", md)
    assert errors(r) == [
        f"{tmp_path / 'nope'}: no such file or directory",
        f"{tmp_path / 'empty'}: no workstream files (.yaml, .yml, .json, .toml) in this directory",
        f"{md}: unsupported file type (use .yaml, .yml, .json or .toml)",
    ]


# -- bad input: every problem, one line each -------------------------------------------------


BAD_FILES: list[tuple[str, str | bytes, str]] = [
    ("empty.yaml", "", "empty file"),
    ("blank.yaml", "  \n\n", "empty file"),
    ("comments.yaml", "# only a comment\n", "empty file"),
    ("binary.yaml", b"\x00\x01\x02id: a", "binary file"),
    ("latin1.yaml", "id: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("badyaml.yaml", "id: a\ntitle: [unclosed\n", "invalid YAML"),
    ("tabs.yaml", "id: a\n\tx: 1\n", "invalid YAML"),
    ("dupkey.yaml", "id: a\nid: b\n", "duplicate key 'id'"),
    ("badjson.json", '{"id": "a",\n "x": }', "line 2 column 7: invalid JSON: Expecting value"),
    ("dupkey.json", '{"id": "a", "id": "b"}', "duplicate key 'id'"),
    ("badtoml.toml", 'id = "a"\ntitle = \n', "line 2 column 9: invalid TOML"),
    ("scalar.yaml", "just a string\n", "expected a workstream (a mapping of fields), got str"),
    ("number.json", "42", "got int"),
    ("nested.yaml", "- [1, 2]\n", "[0]: expected a workstream (a mapping of fields), got a list"),
    ("nonobj.json", '[{"id": "ok1"}, 3, "x", null]', "[1]: expected a workstream"),
    ("noid.yaml", "title: no id\n", "id: required field is missing"),
    ("unknown.yaml", "id: a\ndepend_on: [b]\n",
     "depend_on: unknown field (did you mean 'depends_on'?)"),
    ("types.yaml", "id: a\ntimeout: soon\n",
     ":a: timeout: Input should be a valid number, unable to parse string as a number "
     "(got str 'soon')"),
    ("deps.yaml", "id: a\ndepends_on: b\n", "depends_on: Input should be a valid list"),
    ("scope.yaml", "id: a\nscope:\n  allow: [src/, /etc/passwd]\n",
     "scope.allow[1]: '/etc/passwd': absolute"),
    ("gitscope.yaml", "id: a\nscope:\n  allow: ['**/.git/**']\n", "reaches into .git/"),
    ("intkey.yaml", "id: a\n1: x\n", "field names must be strings"),
    ("date.yaml", "id: 2024-01-01\n", "id: Input should be a valid string"),
    ("bool.yaml", "id: yes\n", "id: Input should be a valid string"),
]


@pytest.mark.parametrize(("name", "content", "expected"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_gives_one_line_error(tmp_path: Path, name: str, content: str | bytes,
                                       expected: str) -> None:
    f = write(tmp_path / name, content)
    r = load(f)
    lines = errors(r)
    assert lines, f"no error for {name}"
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(str(f)) for line in lines)


def test_all_errors_collected_at_once(tmp_path: Path) -> None:
    for name, content, _ in BAD_FILES:
        write(tmp_path / name, content)
    write(tmp_path / "good.yaml", "id: good\n")
    r = load(tmp_path)
    lines = errors(r)
    assert "good" in ids(r) and "ok1" in ids(r)
    # every bad file is named at least once
    for name, _, _ in BAD_FILES:
        assert any(line.startswith(str(tmp_path / name)) for line in lines), name
    assert len(lines) >= len(BAD_FILES)


def test_yaml_error_reports_line_number(tmp_path: Path) -> None:
    f = write(tmp_path / "a.yaml", "id: a\ntitle: x\nscope:\n  allow: [a\n  deny: b\n")
    (line,) = errors(load(f))
    assert line.startswith(f"{f}: line ")
    assert "invalid YAML" in line


def test_broken_symlink_in_directory(tmp_path: Path) -> None:
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "missing.yaml")
    write(tmp_path / "a.yaml", "id: a\n")
    r = load(tmp_path)
    assert ids(r) == ["a"]
    assert errors(r) == [f"{tmp_path / 'dangling.yaml'}: broken symbolic link"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    f = write(tmp_path / "a.yaml", "id: a\n")
    f.chmod(0)
    try:
        assert errors(load(f)) == [f"{f}: cannot read: Permission denied"]
    finally:
        f.chmod(0o644)


def test_directory_named_like_a_file(tmp_path: Path) -> None:
    d = tmp_path / "ws.yaml"
    write(d / "inner.yaml", "id: inner\n")
    r = load(d)
    assert ids(r) == ["inner"]


HOSTILE = ["../x", "a..b", "x.lock", "a b", "@{", "a\x00b", "a\nb", "a\x1b[2Jb", "\u0430dmin",
           "x" * 10240, "A", "a/b", ""]


@pytest.mark.parametrize("bad_id", HOSTILE, ids=[repr(h)[:20] for h in HOSTILE])
def test_hostile_id_in_file_is_one_line(tmp_path: Path, bad_id: str) -> None:
    items = [{"id": bad_id}, {"id": "fine", "depends_on": [bad_id]}]
    f = write(tmp_path / "w.json", json.dumps(items))
    r = load(f)
    assert ids(r) == []
    lines = errors(r)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{f}:[0]: id: ")
    assert lines[1].startswith(f"{f}:fine: depends_on[0]: ")
    for line in lines:
        assert len(line) < 400, len(line)  # long values truncated


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "id: same\n")
    b = write(tmp_path / "b.yaml", "- id: other\n- id: same\n")
    c = write(tmp_path / "c.yaml", "- id: twice\n- id: twice\n")
    r = load(tmp_path)
    assert ids(r) == ["same", "other", "twice"]
    assert errors(r) == [
        f"{b}:same: id: duplicate id, also defined in {a}",
        f"{c}:twice: id: duplicate id, also defined in earlier in the same file",
    ]


def test_native_duplicate_dependencies_warned_and_removed(tmp_path: Path) -> None:
    f = write(tmp_path / "a.yaml", "- id: b\n- id: a\n  depends_on: [b, b]\n")
    r = load(f)
    assert errors(r) == []
    assert r.workstreams[1].depends_on == ["b"]
    assert [str(w) for w in r.warnings] == [f"{f}:a: depends_on: duplicate entries removed: b"]


# -- legacy bundles are read directly ---------------------------------------------------------

LEGACY = {
    "id": "ws-core",
    "openspec_change": "OS-1",
    "ccpm_issue": "TBD",
    "gate": 1,
    "files_scope": ["src/core/"],
    "tasks": ["Do it"],
    "acceptance_tests": ["pytest -q", "Everything works"],
    "depends_on": [],
    "tool": "aider",
}


def test_legacy_bundles_auto_detected_next_to_native(tmp_path: Path) -> None:
    write(tmp_path / "legacy.json", "/* DOC_ID: X */\n" + json.dumps(LEGACY))
    write(tmp_path / "native.yaml", "id: app\ndepends_on: [ws-core]\n")
    r = load(tmp_path)
    assert errors(r) == []
    assert ids(r) == ["ws-core", "app"]
    core = r.workstreams[0]
    assert core.tool == "aider" and core.acceptance == ["pytest -q"]
    assert core.source == str(tmp_path / "legacy.json")
    assert [str(w) for w in r.warnings] == [
        f"{tmp_path / 'legacy.json'}:ws-core: legacy bundle: acceptance_tests[1] is not a "
        "command; added to the prompt as an acceptance criterion: 'Everything works'"
    ]


def test_dependent_of_refused_bundle_is_an_error(tmp_path: Path) -> None:
    bad = {**LEGACY, "tasks": []}
    write(tmp_path / "a.json", json.dumps(bad))
    write(tmp_path / "b.yaml", "id: app\ndepends_on: [ws-core]\n")
    r = load(tmp_path)
    assert errors(r) == [
        f"{tmp_path / 'a.json'}:ws-core: legacy bundle refused: tasks: no tasks, so nothing for "
        "a tool to do",
        f"{tmp_path / 'b.yaml'}:app: depends_on: 'ws-core' could not be loaded (see the error "
        f"for {tmp_path / 'a.json'}); app cannot be planned without it",
    ]


def test_json_schema_file_is_not_a_workstream(tmp_path: Path) -> None:
    f = write(tmp_path / "s.json", json.dumps({"$schema": "x", "type": "object"}))
    assert errors(load(f)) == [f"{f}: a JSON Schema document, not a workstream"]


# -- SpecIssue, config ------------------------------------------------------------------------


def test_spec_issue_is_one_line() -> None:
    assert str(SpecIssue("a.yaml", "ws", "timeout", "bad")) == "a.yaml:ws: timeout: bad"
    assert str(SpecIssue("a.yaml", None, "", "empty")) == "a.yaml: empty"
    odd = str(SpecIssue("a\nb.yaml", "x\ty", "f\x00", "p\r\n" + "z" * 5000))
    assert odd.isprintable() and "\\n" in odd and len(odd) < 1500


def test_load_config(tmp_path: Path) -> None:
    assert load_config(tmp_path).run.jobs == 4  # no uet.toml: defaults
    write(tmp_path / "uet.toml",
          '[run]\njobs = 2\nworkstreams = "ws"\n[hooks]\npre-merge = ["true"]\n')
    cfg = load_config(tmp_path)
    assert cfg.run.jobs == 2 and cfg.hooks.pre_merge == ["true"]
    assert default_paths(tmp_path, cfg) == [tmp_path / "ws"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\njobs = 0\n", "uet.toml: run.jobs: Input should be greater than or equal to 1"),
        ("[run]\njbos = 3\n", "uet.toml: run.jbos: unknown field (did you mean 'jobs'?)"),
        ("[run\n", "uet.toml: line 1 column 5: invalid TOML"),
        ("[tools.x]\noutput = 'zip'\n", "uet.toml: tools.x.command: required field is missing; "
                                        "uet.toml: tools.x.output: Input should be"),
    ],
)
def test_invalid_config_raises_one_line(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "uet.toml", text)
    with pytest.raises(UetError) as info:
        load_config(tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bundled_samples_load_cleanly() -> None:
    r = load(samples_dir())
    assert errors(r) == [] and r.warnings == []
    assert len(r.workstreams) == 5
    assert {ws.id for ws in r.workstreams if ws.depends_on} == {"api-auth", "api-users", "docs-api"}
    assert all(ws.scope.allow and ws.acceptance for ws in r.workstreams)


def test_toml_single_workstream_table_and_yaml_document_labels(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", '[workstream]\nid = "a"\n')
    f = write(tmp_path / "b.yaml", "id: b\n---\n- id: c\n- 7\n")
    r = load(tmp_path)
    assert ids(r) == ["a", "b", "c"]
    assert errors(r) == [
        f"{f}:doc 2[1]: expected a workstream (a mapping of fields), got int"
    ]
