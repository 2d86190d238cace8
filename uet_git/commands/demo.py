"""`uet demo`: a small sample repository whose workstreams tell the whole story.

A tiny Python package with tests and eight workstreams run by plain Python scripts: independent
features that land, a dependent chain, one whose acceptance tests fail (its dependent is
blocked), and two unordered edits of the same line (one lands, the other is a conflict).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

from uet_git.errors import UetError
from uet_git.gitrepo.repo import run_git

PACKAGE = {
    "calc/__init__.py": '"""A tiny calculator."""\n\n__version__ = "1.0"\n',
    "calc/ops.py": textwrap.dedent('''\
        def add(a, b):
            return a + b


        def sub(a, b):
            return a - b
        '''),
    "tests/__init__.py": "",
    "tests/test_ops.py": textwrap.dedent('''\
        import unittest

        from calc.ops import add, sub


        class OpsTest(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(2, 3), 5)

            def test_sub(self):
                self.assertEqual(sub(2, 3), -1)
        '''),
    "README.md": "# calc\n\nA tiny calculator, built by uet's demo workstreams.\n",
    ".gitignore": "__pycache__/\n*.pyc\n.pytest_cache/\n",
}

# The "tool" of every demo workstream: writes the files given as NAME=CONTENT pairs in a JSON
# argument, optionally only when a required file exists (the chain's dependency check), or
# rewrites one line. It stands for an AI CLI or a codemod: it edits the worktree and exits.
TOOL = textwrap.dedent('''\
    """Demo tool: apply edits described in JSON to the current directory."""
    import json
    import os
    import sys

    with open(sys.argv[1]) as f:
        spec = json.load(f)
    for need in spec.get("requires", []):
        if not os.path.exists(need):
            sys.exit(f"demo tool: {need} is missing; this change builds on it")
    for path, content in spec.get("write", {}).items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    for path, (old, new) in spec.get("replace", {}).items():
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace(old, new))
    print("demo tool: edited", ", ".join([*spec.get("write", {}), *spec.get("replace", {})]))
    ''')


def _feature(name: str, body: str, test: str) -> dict[str, str]:
    return {
        f"calc/{name}.py": textwrap.dedent(body),
        f"tests/test_{name}.py": textwrap.dedent(test),
    }


WORKSTREAMS: list[dict[str, object]] = [
    {
        "id": "add-mul",
        "title": "Add multiplication",
        "scope": ["calc/mul.py", "tests/test_mul.py"],
        "edit": {"write": _feature("mul", """\
            def mul(a, b):
                return a * b
            """, """\
            import unittest

            from calc.mul import mul


            class MulTest(unittest.TestCase):
                def test_mul(self):
                    self.assertEqual(mul(3, 4), 12)
            """)},
    },
    {
        "id": "add-div",
        "title": "Add division",
        "scope": ["calc/div.py", "tests/test_div.py"],
        "edit": {"write": _feature("div", """\
            def div(a, b):
                if b == 0:
                    raise ZeroDivisionError("division by zero")
                return a / b
            """, """\
            import unittest

            from calc.div import div


            class DivTest(unittest.TestCase):
                def test_div(self):
                    self.assertEqual(div(8, 2), 4)
            """)},
    },
    {
        "id": "add-power",
        "title": "Add power, built on multiplication",
        "depends_on": ["add-mul"],
        "scope": ["calc/power.py", "tests/test_power.py"],
        "edit": {"requires": ["calc/mul.py"], "write": _feature("power", """\
            from calc.mul import mul


            def power(a, n):
                result = 1
                for _ in range(n):
                    result = mul(result, a)
                return result
            """, """\
            import unittest

            from calc.power import power


            class PowerTest(unittest.TestCase):
                def test_power(self):
                    self.assertEqual(power(2, 10), 1024)
            """)},
    },
    {
        "id": "add-cli",
        "title": "Add a command line, using power and division",
        "depends_on": ["add-power", "add-div"],
        "scope": ["calc/cli.py", "tests/test_cli.py"],
        "edit": {"requires": ["calc/power.py", "calc/div.py"], "write": _feature("cli", """\
            import sys

            from calc.div import div
            from calc.power import power


            def main(argv):
                op, a, b = argv
                fn = {"pow": power, "div": div}[op]
                return fn(int(a), int(b))


            if __name__ == "__main__":
                print(main(sys.argv[1:]))
            """, """\
            import unittest

            from calc.cli import main


            class CliTest(unittest.TestCase):
                def test_pow(self):
                    self.assertEqual(main(["pow", "3", "2"]), 9)
            """)},
    },
    {
        "id": "add-sqrt",
        "title": "Add square root (the tool gets it wrong: its tests fail)",
        "scope": ["calc/sqrt.py", "tests/test_sqrt.py"],
        "edit": {"write": _feature("sqrt", """\
            def sqrt(x):
                return x / 2  # wrong, and the tests say so
            """, """\
            import unittest

            from calc.sqrt import sqrt


            class SqrtTest(unittest.TestCase):
                def test_sqrt(self):
                    self.assertEqual(sqrt(9), 3)
            """)},
    },
    {
        "id": "add-stats",
        "title": "Add statistics, built on square root (blocked when it fails)",
        "depends_on": ["add-sqrt"],
        "scope": ["calc/stats.py", "tests/test_stats.py"],
        "edit": {"requires": ["calc/sqrt.py"], "write": _feature("stats", """\
            from calc.sqrt import sqrt


            def stddev(xs):
                m = sum(xs) / len(xs)
                return sqrt(sum((x - m) ** 2 for x in xs) / len(xs))
            """, """\
            import unittest

            from calc.stats import stddev


            class StatsTest(unittest.TestCase):
                def test_stddev(self):
                    self.assertEqual(stddev([1, 1, 1]), 0)
            """)},
    },
    {
        "id": "bump-minor",
        "title": "Release 1.1 (edits the same line as bump-major: one of the two conflicts)",
        "scope": ["calc/__init__.py"],
        "edit": {"replace": {"calc/__init__.py": ['"1.0"', '"1.1"']}},
    },
    {
        "id": "bump-major",
        "title": "Release 2.0",
        "scope": ["calc/__init__.py"],
        "edit": {"replace": {"calc/__init__.py": ['"1.0"', '"2.0"']}},
    },
]


def test_command(python: str) -> str:
    """The demo's acceptance command. Always unittest, whether or not pytest is installed: the
    demo's tests are unittest classes, a newcomer's run then reads the same on every machine,
    and the interpreter starts its test runner in a fifth of pytest's CPU (the demo runs it a
    dozen times)."""
    return f"{python} -m unittest discover -q -s tests -t ."


def _yaml_list(items: list[str]) -> str:
    return "[" + ", ".join(_quote(i) for i in items) + "]"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _workstream_yaml(ws: dict[str, object], python: str, accept: str) -> str:
    lines = [
        f"id: {ws['id']}",
        f"title: {_quote(str(ws['title']))}",
        f"depends_on: {_yaml_list(list(ws.get('depends_on', [])))}",  # type: ignore[call-overload]
        "tool: shell",
        f"command: [{_quote(python)}, scripts/demo_tool.py, scripts/edits/{ws['id']}.json]",
        "scope:",
        f"  allow: {_yaml_list(list(ws['scope']))}",  # type: ignore[call-overload]
        f"acceptance: [{_quote(accept)}]",
        "timeout: 60",
        "estimate: 1",
    ]
    return "\n".join(lines) + "\n"


def build_demo_repo(path: Path, python: str | None = None) -> Path:
    """Create the sample repository at ``path`` (which must not exist or be empty)."""
    python = python or sys.executable
    if path.exists() and any(path.iterdir()):
        raise UetError(f"{path}: exists and is not empty; give another directory to `uet demo`")
    path.mkdir(parents=True, exist_ok=True)
    accept = test_command(python)
    files = dict(PACKAGE)
    files["scripts/demo_tool.py"] = TOOL
    files["uet.toml"] = textwrap.dedent("""\
        # uet demo configuration
        [run]
        jobs = 4
        workstreams = "workstreams"
        predicted_conflicts = "ignore"  # the demo shows a conflict: run both bumps at once
        """)
    for ws in WORKSTREAMS:
        files[f"workstreams/{ws['id']}.yaml"] = _workstream_yaml(ws, python, accept)
        files[f"scripts/edits/{ws['id']}.json"] = json.dumps(ws["edit"], indent=2) + "\n"
    for name, content in files.items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    env = {
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "uet demo"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "demo@uet.invalid"),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "uet demo"),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "demo@uet.invalid"),
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["commit", "-q", "-m", "calc: a tiny calculator"]):
        proc = run_git(args, cwd=path, env=env, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise UetError(f"{path}: git {args[0]} failed: {err}")
    return path
