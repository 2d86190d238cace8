"""The README is part of the product: its commands, tables and CI must agree with the code;
and the rules the README and docs/internals.md state about the code hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from uet_git.cli import COMMANDS
from uet_git.ledger.states import transitions_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_transition_table_is_generated_from_the_code() -> None:
    m = re.search(r"<!-- transitions:begin -->\n(.*?)\n<!-- transitions:end -->", README, re.S)
    assert m, "README lost its transitions table markers"
    assert m.group(1).strip() == transitions_markdown().strip()


def test_ci_runs_the_readme_test_command() -> None:
    m = re.search(r"^# 2\..*\n(.+)$", README, re.M)
    assert m, "README lost its second command"
    command = m.group(1).strip()
    assert "pytest" in command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci, f"{command!r} is not a line of .ci/run"


def test_every_command_in_usage_exists() -> None:
    usage = README[README.index("## Usage"):README.index("### A workstream")]
    used = set(re.findall(r"^uet (\w+)", usage, re.M))
    assert used, "no commands found in the README's usage"
    assert used <= set(COMMANDS), used - set(COMMANDS)



# An import inside a function is indented, or follows a compound statement's colon or a `;` on
# its line, or continues a backslash-ended line; a file with none of these has only module-level
# imports and needs no parse (most do not: parsing every module was most of this test).
_MAYBE_LOCAL = re.compile(r"(?:^[ \t\f]+|[:;][ \t\f]*|\\\n[ \t\f]*)(?:import|from)\b", re.M)
# Import statements sit only in statement lists; expressions (a lambda's body included) hold none.
_STATEMENT = ast.stmt | ast.excepthandler | ast.match_case
_FUNCTION = ast.FunctionDef | ast.AsyncFunctionDef


def local_uet_imports(source: str, name: str) -> list[str]:
    """``NAME:LINE module`` for each import of a uet_git module (absolute, or relative: inside
    the package every relative import is one) in a function body of ``source``."""
    if not _MAYBE_LOCAL.search(source):
        return []
    found: list[str] = []
    todo: list[tuple[ast.AST, bool]] = [(ast.parse(source, filename=name), False)]
    while todo:
        node, in_function = todo.pop()
        if in_function and isinstance(node, ast.Import):
            found.extend(f"{name}:{node.lineno} {a.name}" for a in node.names
                         if a.name.split(".")[0] == "uet_git")
        elif in_function and isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.split(".")[0] == "uet_git":
                found.append(f"{name}:{node.lineno} {'.' * node.level}{module}")
        in_function = in_function or isinstance(node, _FUNCTION)
        todo.extend((child, in_function) for child in ast.iter_child_nodes(node)
                    if isinstance(child, _STATEMENT))
    return sorted(found, key=lambda line: (int(line.split(":")[1].split()[0]), line))


def test_local_import_finder_sees_absolute_and_relative_imports() -> None:
    source = (
        "import json\n"
        "from uet_git.errors import UetError\n"
        "def f():\n"
        "    import os\n"
        "    import uet_git.engine.run\n"
        "    def g():\n"
        "        from . import sibling\n"
        "        from uet_git.ledger import query\n"
        "    from click import echo\n"
        "class C:\n"
        "    def m(self):\n"
        "        from ..gitrepo.refs import for_each_ref\n"
        "def h(): import uet_git.errors as e; from uet_git import cli\n"
        "def k(): \\\nfrom uet_git.ledger import words\n"
    )
    assert local_uet_imports(source, "m.py") == [
        "m.py:5 uet_git.engine.run", "m.py:7 .", "m.py:8 uet_git.ledger",
        "m.py:12 ..gitrepo.refs", "m.py:13 uet_git", "m.py:13 uet_git.errors",
        "m.py:15 uet_git.ledger"]
    # a file with no import that could be local is not parsed (this one would not parse)
    assert local_uet_imports("import uet_git.cli\nfrom uet_git import cli\nX = (\n", "n.py") == []


def test_no_function_local_imports_of_uet_modules() -> None:
    # The CLI loads each command's module when it is invoked (so `uet status` does not import
    # the run engine); anywhere else a local import hides an import circle.
    allowed = {ROOT / "uet_git" / "cli" / "__init__.py"}
    found = [line for path in sorted((ROOT / "uet_git").rglob("*.py")) if path not in allowed
             for line in local_uet_imports(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert not found, "function-local imports of uet_git modules:\n" + "\n".join(found)
