"""Reading workstream files and ``uet.toml``; every problem collected, one line each.

Files and formats:
- ``.yaml``/``.yml``, ``.json`` and ``.toml``; any other extension is skipped when a directory is
  read and refused when the file is named explicitly. A directory is read recursively in sorted
  order of relative path; hidden files and directories (``.name``) and symlinked directories are
  skipped.
- YAML and JSON: the document is one workstream (a mapping) or a list of them. A YAML file may
  hold several ``---`` documents, each one of those. Duplicate keys are errors. JSON may start
  with ``/* ... */`` or ``//`` comment lines (the legacy bundles do); they are skipped.
- TOML: the top-level table is one workstream, or the file is an array of tables
  ``[[workstream]]`` (any other top-level key is then an error), each one workstream.
- Legacy pipeline bundles are recognised by their fields (``legacy.is_legacy``) and converted on
  the fly by ``legacy.from_legacy``; its warnings become warnings, a refusal an error.

Every problem is a ``SpecIssue`` whose ``str()`` is one line ``path[:id]: field: problem``
(control characters escaped, long values truncated). Nothing here raises for bad input except
``load_config``, whose contract is to raise ``UetError``.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from uet_git.errors import UetError
from uet_git.spec import legacy
from uet_git.spec.models import Config, Workstream, check_id

if TYPE_CHECKING:
    import yaml

EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
CONFIG_FILE = "uet.toml"
MAX_FILE_BYTES = 16 * 1024 * 1024
_PART_LIMIT = 300


def one_line(value: object, limit: int = _PART_LIMIT) -> str:
    """``value`` as text safe for a one-line message: control and other non-printable
    characters escaped, long text truncated with its length."""
    s = str(value)
    if not s.isprintable():
        s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    if len(s) > limit:
        s = f"{s[:limit]}... ({len(s)} characters)"
    return s


@dataclass
class SpecIssue:
    """A problem (or warning) in a workstream file: ``path[:id]: field: problem``."""

    path: str
    ws_id: str | None
    field: str
    problem: str

    def __str__(self) -> str:
        where = one_line(self.path, 500)
        if self.ws_id:
            where += f":{one_line(self.ws_id, 120)}"
        if self.field:
            return f"{where}: {one_line(self.field, 200)}: {one_line(self.problem, 1000)}"
        return f"{where}: {one_line(self.problem, 1000)}"


@dataclass
class LoadResult:
    workstreams: list[Workstream] = field(default_factory=list)
    errors: list[SpecIssue] = field(default_factory=list)
    warnings: list[SpecIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# -- parsing files ---------------------------------------------------------------------------


@dataclass
class Item:
    """One raw object read from a file, with its position (``[2]``, ``doc 2[0]``) when the
    file holds more than one."""

    path: str
    label: str | None
    data: Any


def discover(paths: Sequence[Path]) -> tuple[list[Path], list[SpecIssue]]:
    """The workstream files under ``paths`` (files as given, directories recursively), each
    once, in order; missing paths and explicit files of unknown type are issues."""
    files: list[Path] = []
    issues: list[SpecIssue] = []
    seen: set[Path] = set()

    def add(f: Path) -> None:
        try:
            key = f.resolve()
        except (OSError, RuntimeError):
            key = f.absolute()
        if key not in seen:
            seen.add(key)
            files.append(f)

    for p in paths:
        p = Path(p)
        try:
            is_dir = p.is_dir()
            exists = p.exists()
        except OSError as exc:
            issues.append(SpecIssue(str(p), None, "", f"cannot read: {exc.strerror or exc}"))
            continue
        if is_dir:
            found = sorted(_walk(p, issues), key=lambda f: f.relative_to(p).as_posix())
            if not found:
                issues.append(SpecIssue(
                    str(p), None, "",
                    "no workstream files (.yaml, .yml, .json, .toml) in this directory",
                ))
            for f in found:
                add(f)
        elif not exists:
            issues.append(SpecIssue(str(p), None, "", "no such file or directory"))
        elif p.suffix.lower() not in EXTENSIONS:
            issues.append(SpecIssue(
                str(p), None, "", "unsupported file type (use .yaml, .yml, .json or .toml)"
            ))
        else:
            add(p)
    return files, issues


def _walk(d: Path, issues: list[SpecIssue]) -> Iterator[Path]:
    try:
        entries = sorted(d.iterdir())
    except OSError as exc:
        issues.append(SpecIssue(str(d), None, "", f"cannot read directory: {exc.strerror or exc}"))
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir():
                if not e.is_symlink():
                    yield from _walk(e, issues)
            elif e.suffix.lower() in EXTENSIONS:
                if e.is_file():
                    yield e
                elif e.is_symlink() and not e.exists():
                    issues.append(SpecIssue(str(e), None, "", "broken symbolic link"))
        except OSError as exc:
            issues.append(SpecIssue(str(e), None, "", f"cannot read: {exc.strerror or exc}"))


def read_text(path: Path) -> tuple[str | None, SpecIssue | None]:
    """The file's text, or the one-line reason it cannot be used."""
    p = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, SpecIssue(p, None, "", f"file too large ({size} bytes)")
        raw = path.read_bytes()
    except OSError as exc:
        return None, SpecIssue(p, None, "", f"cannot read: {exc.strerror or exc}")
    if b"\x00" in raw:
        return None, SpecIssue(p, None, "", "binary file (contains NUL bytes), not a workstream")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, SpecIssue(
            p, None, "", f"not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"
        )
    return text.removeprefix("\ufeff"), None


def parse_file(path: Path) -> tuple[list[Item], list[SpecIssue]]:
    """Parse one file into raw items. Syntax errors carry their line number."""
    text, issue = read_text(path)
    if issue is not None or text is None:
        return [], [issue] if issue else []
    kind = EXTENSIONS.get(path.suffix.lower(), "yaml")
    p = str(path)
    if not text.strip():
        return [], [SpecIssue(p, None, "", "empty file: no workstream in it")]
    if kind == "json":
        return _parse_json(p, text)
    if kind == "toml":
        return _parse_toml(p, text)
    return _parse_yaml(p, text)


def strip_leading_comments(text: str) -> str:
    """Blank out ``/* ... */`` and ``//`` comments before the first JSON value, keeping line
    numbers (the legacy bundles begin with ``/* DOC_ID: ... */``)."""
    i = 0
    n = len(text)
    out = []
    while True:
        j = i
        while j < n and text[j].isspace():
            j += 1
        if text.startswith("/*", j):
            end = text.find("*/", j + 2)
            if end < 0:
                break
            out.append(text[i:j] + re.sub(r"[^\n]", " ", text[j:end + 2]))
            i = end + 2
        elif text.startswith("//", j):
            end = text.find("\n", j)
            end = n if end < 0 else end
            out.append(text[i:j] + " " * (end - j))
            i = end
        else:
            break
    return "".join(out) + text[i:]


def _no_dup_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _parse_json(p: str, text: str) -> tuple[list[Item], list[SpecIssue]]:
    body = strip_leading_comments(text)
    try:
        data = json.loads(body, object_pairs_hook=_no_dup_pairs)
    except _DuplicateKey as exc:
        key = one_line(repr(exc.key))
        return [], [SpecIssue(p, None, "", f"invalid JSON: duplicate key {key}")]
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        if legacy.looks_like_template(body):
            return [], [SpecIssue(
                p, None, where,
                f"unrendered template (placeholders such as {{...}} or {{['...']}} in values), "
                f"not valid JSON: {exc.msg}",
            )]
        return [], [SpecIssue(p, None, where, f"invalid JSON: {exc.msg}")]
    except RecursionError:
        return [], [SpecIssue(p, None, "", "invalid JSON: nested too deeply")]
    return _items(p, [data]), []


def _parse_toml(p: str, text: str) -> tuple[list[Item], list[SpecIssue]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
        where = ""
        if m:
            where = f"line {m[1]} column {m[2]}"
            msg = msg[: m.start()]
        return [], [SpecIssue(p, None, where, f"invalid TOML: {msg}")]
    if "workstream" in data:
        ws = data["workstream"]
        others = sorted(k for k in data if k != "workstream")
        if isinstance(ws, list):
            issues = [
                SpecIssue(p, None, k, "unexpected top-level key next to [[workstream]]")
                for k in others
            ]
            return _items(p, [ws]), issues
        if isinstance(ws, dict) and not others:
            return _items(p, [ws]), []
    return _items(p, [data]), []


@cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """Safe loading that refuses duplicate keys instead of keeping the last one."""
    # why lazy: importing yaml is a noticeable part of `uet run`'s start-up, paid for nothing
    # when the workstreams are JSON or TOML
    import yaml

    class YamlLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: YamlLoader, node: yaml.MappingNode, deep: bool = False
                          ) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return loader.construct_mapping(node, deep=deep)

    YamlLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping  # type: ignore[arg-type]
    )
    return YamlLoader


def _parse_yaml(p: str, text: str) -> tuple[list[Item], list[SpecIssue]]:
    import yaml  # why lazy: see _yaml_loader

    try:
        docs = [d for d in yaml.load_all(text, Loader=_yaml_loader())]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        return [], [SpecIssue(p, None, where, f"invalid YAML: {what}")]
    except yaml.YAMLError as exc:
        return [], [SpecIssue(p, None, "", f"invalid YAML: {exc}")]
    except RecursionError:
        return [], [SpecIssue(p, None, "", "invalid YAML: nested too deeply")]
    docs = [d for d in docs if d is not None]
    if not docs:
        return [], [SpecIssue(p, None, "", "empty file: no workstream in it")]
    return _items(p, docs), []


def _items(p: str, docs: list[Any]) -> list[Item]:
    """Flatten documents into items; non-mappings stay items so that the caller reports them."""
    multi = len(docs) > 1
    out: list[Item] = []
    for d, doc in enumerate(docs, 1):
        prefix = f"doc {d}" if multi else ""
        if isinstance(doc, list):
            for i, obj in enumerate(doc):
                out.append(Item(p, f"{prefix}[{i}]", obj))
        else:
            out.append(Item(p, prefix or None, doc))
    return out


# -- validation ------------------------------------------------------------------------------


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def pydantic_issues(
    exc: ValidationError, path: str, ws_id: str | None, model: type[BaseModel] | None = None
) -> list[SpecIssue]:
    """One ``SpecIssue`` per pydantic error, in the file's vocabulary."""
    out: list[SpecIssue] = []
    for err in exc.errors(include_url=False):
        loc = [
            p for p in err.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-"))
        ]
        fld = _loc(loc)
        typ = err.get("type", "")
        msg = str(err.get("msg", "invalid"))
        value = err.get("input")
        if typ == "extra_forbidden":
            problem = "unknown field"
            names = _field_names(model, loc[:-1]) if model is not None else []
            close = difflib.get_close_matches(str(loc[-1]), names, n=1) if loc else []
            if close:
                problem += f" (did you mean {close[0]!r}?)"
        elif typ == "missing":
            problem = "required field is missing"
        elif typ in ("value_error", "assertion_error"):
            problem = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
            m = re.match(r"^\[(\d+)\] ", problem)
            if m:  # our list validators say which element
                fld += f"[{m[1]}]"
                problem = problem[m.end():]
        else:
            problem = f"{msg} (got {_describe(value)})"
        out.append(SpecIssue(path, ws_id, fld, problem))
    return out


def _describe(value: Any) -> str:
    if isinstance(value, dict | list):
        return type(value).__name__
    return f"{type(value).__name__} {one_line(repr(value), 60)}"


def _field_names(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Field names (and aliases) at ``loc`` inside ``model``, for 'did you mean'."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    names = list(fields)
    names += [f.alias for f in fields.values() if f.alias]
    return names


def _raw_id(data: Any) -> str | None:
    """The item's id when it is a valid id (so messages can name it), else None."""
    if isinstance(data, dict):
        v = data.get("id")
        if isinstance(v, str):
            try:
                return check_id(v)
            except ValueError:
                return None
    return None


def workstream_from_item(item: Item) -> tuple[Workstream | None, list[SpecIssue], list[SpecIssue]]:
    """(workstream or None, errors, warnings) for one raw item, native or legacy."""
    p = item.path
    data = item.data
    ws_id = _raw_id(data)
    who = ws_id or item.label
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else type(data).__name__
        return None, [SpecIssue(
            p, item.label, "", f"expected a workstream (a mapping of fields), got {what}"
        )], []
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        return None, [SpecIssue(
            p, who, "", f"field names must be strings, got {one_line(repr(bad_keys[0]), 60)}"
        )], []
    other = legacy.not_a_workstream(data)
    if other is not None:
        return None, [SpecIssue(p, who, "", other)], []
    if legacy.is_legacy(data):
        out = legacy.from_legacy(data, p)
        warns = [SpecIssue(p, out.ws_id or who, "", f"legacy bundle: {w}") for w in out.warnings]
        if out.refused is not None or out.workstream is None:
            reason = out.refused or "not convertible"
            refusal = SpecIssue(p, out.ws_id or who, "", f"legacy bundle refused: {reason}")
            return None, [refusal], warns
        return out.workstream, [], warns
    warnings: list[SpecIssue] = []
    deps = data.get("depends_on")
    if isinstance(deps, list) and all(isinstance(d, str) for d in deps):
        unique = list(dict.fromkeys(deps))
        if len(unique) != len(deps):
            dups = sorted({d for d in deps if deps.count(d) > 1})
            warnings.append(SpecIssue(
                p, who, "depends_on", f"duplicate entries removed: {', '.join(dups)}"
            ))
            data = {**data, "depends_on": unique}
    try:
        ws = Workstream.model_validate(data)
    except ValidationError as exc:
        return None, pydantic_issues(exc, p, who, Workstream), warnings
    ws._source = p
    return ws, [], warnings


def load_workstreams(paths: Sequence[Path]) -> LoadResult:
    """Load every workstream under ``paths``. Never raises for bad input: every problem is in
    ``errors`` (one per line), duplicate ids name both files, and a workstream that depends on
    a refused legacy bundle gets an error of its own (it is never planned without it)."""
    result = LoadResult()
    files, issues = discover(paths)
    result.errors.extend(issues)
    first: dict[str, str] = {}
    refused: dict[str, str] = {}  # id of a refused item -> its file
    for f in files:
        items, issues = parse_file(f)
        result.errors.extend(issues)
        if issues and not items:
            # a file that cannot be parsed probably held the workstream named like it
            stem = _valid_id(f.stem)
            if stem is not None:
                refused.setdefault(stem, str(f))
        for item in items:
            ws, errors, warnings = workstream_from_item(item)
            result.errors.extend(errors)
            result.warnings.extend(warnings)
            if ws is None:
                rid = _loose_id(item.data)
                if rid is not None and errors:
                    refused.setdefault(rid, item.path)
                continue
            if ws.id in first:
                where = "earlier in the same file" if first[ws.id] == item.path else first[ws.id]
                result.errors.append(SpecIssue(
                    item.path, ws.id, "id", f"duplicate id, also defined in {where}"
                ))
                continue
            first[ws.id] = item.path
            result.workstreams.append(ws)
    for ws in result.workstreams:
        for dep in ws.depends_on:
            if dep in refused and dep not in first:
                result.errors.append(SpecIssue(
                    ws.source or "?", ws.id, "depends_on",
                    f"{dep!r} could not be loaded (see the error for {refused[dep]}); "
                    f"{ws.id} cannot be planned without it",
                ))
    return result


def _valid_id(value: str) -> str | None:
    try:
        return check_id(value)
    except ValueError:
        return None


def _loose_id(data: Any) -> str | None:
    """An id to remember for a refused item, for dependents' messages (legacy ids included)."""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


# -- uet.toml --------------------------------------------------------------------------------


def config_issues(repo_root: Path) -> tuple[Config, list[SpecIssue]]:
    """``uet.toml`` under ``repo_root`` (defaults when absent) and every problem in it."""
    path = Path(repo_root) / CONFIG_FILE
    if not path.exists():
        return Config(), []
    text, issue = read_text(path)
    if issue is not None or text is None:
        return Config(), [SpecIssue(CONFIG_FILE, None, issue.field if issue else "",
                                    issue.problem if issue else "cannot read")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
        where = f"line {m[1]} column {m[2]}" if m else ""
        if m:
            msg = msg[: m.start()]
        return Config(), [SpecIssue(CONFIG_FILE, None, where, f"invalid TOML: {msg}")]
    try:
        return Config.model_validate(data), []
    except ValidationError as exc:
        return Config(), pydantic_issues(exc, CONFIG_FILE, None, Config)


def load_config(repo_root: Path) -> Config:
    """Read ``uet.toml`` at ``repo_root`` if present (defaults otherwise). Raises ``UetError``
    (``uet.toml: field: problem``, several joined by ``; ``) when it is invalid."""
    config, issues = config_issues(repo_root)
    if issues:
        raise UetError("; ".join(str(i) for i in issues))
    return config


def default_paths(repo_root: Path, config: Config) -> list[Path]:
    """Where workstreams are read from when no path is given: ``[run] workstreams``."""
    return [Path(repo_root) / config.run.workstreams]


def samples_dir() -> Path:
    """The sample workstream set bundled with the package (for ``uet plan`` on a sample)."""
    return Path(__file__).parent / "samples"


# -- the seed's environment variables --------------------------------------------------------

# Variables the seed's pipeline read that uet does not honour, and what replaces each.
SEED_ENV = {
    "PIPELINE_ENGINE": "uet has one engine; nothing to choose (remove it)",
    "PIPELINE_DB_PATH": "a run's state is its ledger branch and refs/uet/ in the repository "
                        "(read with `uet status`, `uet log`)",
    "UET_PATCH_LEDGER_DIR": "patches are commits under refs/uet/ in the repository "
                            "(`uet fsck`, `uet gc` look after them)",
}


def seed_env_notices(environ: Mapping[str, str]) -> list[str]:
    """One line per seed variable set in ``environ`` that uet ignores, saying what replaces it."""
    return [f"{name} is set but uet ignores it: {instead}"
            for name, instead in SEED_ENV.items() if environ.get(name)]
