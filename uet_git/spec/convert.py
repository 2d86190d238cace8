"""``uet convert``'s logic: legacy bundles (and native files) -> one native YAML file each.

Every item read gets an ``Outcome``: converted, converted with warnings, or refused with a
one-line reason (files that cannot be parsed are refused as a whole). Dependencies are never
dropped: a converted workstream keeps every ``depends_on`` entry, and ``unresolved`` lists those
that point at an id that was refused or is in none of the inputs, so the caller can say so (the
planner would report them as unknown dependencies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uet_git.errors import UetError
from uet_git.spec import legacy
from uet_git.spec.load import Item, discover, one_line, parse_file, workstream_from_item
from uet_git.spec.models import Workstream, check_id


@dataclass
class Outcome:
    path: str
    label: str | None  # position in the file when it holds several items
    ws_id: str | None
    workstream: Workstream | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: str | None = None
    native: bool = False
    output: Path | None = None

    @property
    def status(self) -> str:
        if self.workstream is None:
            return "refused"
        return "warned" if self.warnings else "converted"

    @property
    def where(self) -> str:
        return self.path + (f" {self.label}" if self.label else "")


def convert_paths(paths: Sequence[Path], *, exclude: Path | None = None) -> list[Outcome]:
    """An outcome for every item in every file under ``paths`` (nothing is written). Files
    under ``exclude`` (the output directory, when it lies inside an input directory) are
    skipped, so converting twice does not read the first run's output."""
    outcomes: list[Outcome] = []
    files, issues = discover(paths)
    if exclude is not None:
        skip = Path(exclude).resolve()
        files = [f for f in files if not f.resolve().is_relative_to(skip)]
    for issue in issues:
        outcomes.append(Outcome(issue.path, None, None, refused=issue.problem))
    seen: dict[str, str] = {}
    for f in files:
        items, issues = parse_file(f)
        for issue in issues:
            reason = f"{issue.field}: {issue.problem}" if issue.field else issue.problem
            outcomes.append(Outcome(str(f), None, _stem_id(f), refused=reason))
        for item in items:
            out = _convert_item(item)
            if out.workstream is not None:
                ws_id = out.workstream.id
                if ws_id in seen:
                    out = Outcome(
                        out.path, out.label, ws_id,
                        refused=f"duplicate id {ws_id!r}, also in {seen[ws_id]}",
                    )
                else:
                    seen[ws_id] = out.where
            outcomes.append(out)
    return outcomes


def _stem_id(f: Path) -> str | None:
    """The id a file that could not be parsed probably held (``ws-abs-001-x.json`` ->
    ``ws-abs-001-x``), so that dependents can name what they miss. Only for messages."""
    try:
        return check_id(f.stem)
    except ValueError:
        return None


def _convert_item(item: Item) -> Outcome:
    data = item.data
    if isinstance(data, dict) and legacy.not_a_workstream(data) is None and legacy.is_legacy(data):
        res = legacy.from_legacy(data, item.path)
        return Outcome(
            item.path, item.label, res.ws_id, res.workstream, list(res.warnings),
            list(res.notes), res.refused,
        )
    ws, errors, warnings = workstream_from_item(item)
    if ws is None:
        first = errors[0] if errors else None
        reason = "not a workstream"
        if first is not None:
            reason = f"{first.field}: {first.problem}" if first.field else first.problem
            if len(errors) > 1:
                reason += f" (and {len(errors) - 1} more problems)"
        ws_id = data.get("id") if isinstance(data, dict) else None
        return Outcome(item.path, item.label, ws_id if isinstance(ws_id, str) else None,
                       refused=reason)
    notes = ["already a native workstream: rewritten as YAML"]
    return Outcome(item.path, item.label, ws.id, ws, [str(w.problem) for w in warnings], notes,
                   native=True)


@dataclass
class Unresolved:
    ws_id: str
    path: str
    dep: str
    why: str

    def __str__(self) -> str:
        return f"{self.ws_id} ({self.path}) depends on {self.dep!r}, {self.why}"


def unresolved(outcomes: Sequence[Outcome]) -> list[Unresolved]:
    """Converted workstreams whose dependencies point at refused or missing ids."""
    converted = {o.workstream.id for o in outcomes if o.workstream is not None}
    refused = {o.ws_id: o for o in outcomes if o.workstream is None and o.ws_id}
    out: list[Unresolved] = []
    for o in outcomes:
        if o.workstream is None:
            continue
        for dep in o.workstream.depends_on:
            if dep in converted:
                continue
            if dep in refused:
                r = refused[dep]
                why = f"which was refused ({r.where}: {one_line(r.refused, 120)})"
            else:
                why = "which is in none of the inputs"
            out.append(Unresolved(o.workstream.id, o.where, dep, why))
    return out


# -- writing ---------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def to_yaml(ws: Workstream, header: Sequence[str] = ()) -> str:
    """``ws`` as a native YAML workstream file (defaults left out, field order as documented),
    with ``header`` lines as a leading comment."""
    data: dict[str, Any] = ws.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    data["tool"] = ws.tool
    order = list(Workstream.model_fields)
    data = {k: data[k] for k in order if k in data}
    body = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
        width=100,
    )
    lines = [f"# {one_line(h, 400)}" for h in header]
    return "\n".join([*lines, body]) if lines else body


def write_outputs(outcomes: Sequence[Outcome], out_dir: Path, *, force: bool = False) -> None:
    """Write ``<id>.yaml`` for every converted outcome into ``out_dir`` (created if needed).
    Without ``force``, refuses (``UetError``, nothing written) when any target exists."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UetError(f"{out_dir}: exists and is not a directory")
    todo = [o for o in outcomes if o.workstream is not None]
    targets = {id(o): out_dir / f"{o.workstream.id}.yaml" for o in todo if o.workstream}
    if not force:
        existing = [t for t in targets.values() if t.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise UetError(f"{existing[0]}: already exists{more}; use --force to overwrite")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for o in todo:
            assert o.workstream is not None
            kind = "native workstream" if o.native else "legacy bundle"
            header = [f"converted by uet convert from {o.where} ({kind})"]
            header += [f"warning: {w}" for w in o.warnings]
            target = targets[id(o)]
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(to_yaml(o.workstream, header), encoding="utf-8")
            tmp.replace(target)
            o.output = target
    except OSError as exc:
        raise UetError(f"{out_dir}: cannot write: {exc.strerror or exc}") from exc


def report(outcomes: Sequence[Outcome], problems: Sequence[Unresolved],
           *, verbose: bool = False) -> list[str]:
    """The human report: one line per outcome (warnings listed under it), the unresolved
    dependencies, and a summary line."""
    lines: list[str] = []
    for o in outcomes:
        if o.workstream is None:
            lines.append(f"refused    {one_line(o.where, 300)}: {one_line(o.refused, 600)}")
            continue
        target = f" -> {o.output}" if o.output else ""
        label = "converted" if not o.warnings else "warned   "
        lines.append(f"{label}  {o.workstream.id}  ({one_line(o.where, 300)}){target}")
        lines += [f"  warning: {one_line(w, 600)}" for w in o.warnings]
        if verbose:
            lines += [f"  note: {one_line(n, 600)}" for n in o.notes]
    for p in problems:
        lines.append(f"unresolved dependency: {one_line(str(p), 600)}")
    n_conv = sum(o.status == "converted" for o in outcomes)
    n_warn = sum(o.status == "warned" for o in outcomes)
    n_ref = sum(o.status == "refused" for o in outcomes)
    lines.append(
        f"{n_conv + n_warn} converted ({n_conv} clean, {n_warn} with warnings), "
        f"{n_ref} refused, {len(problems)} unresolved dependencies"
    )
    return lines
