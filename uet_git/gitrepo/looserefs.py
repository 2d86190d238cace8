"""Listing the refs outside one prefix without starting git: the files backend read in process.

The tamper guard lists every ref outside ``refs/uet/`` before and after each tool of an
unsandboxed run. ``git for-each-ref`` would read all of uet's own refs too (thousands in a big
run) and costs a process; this reads the loose refs under ``refs/`` without descending into the
skipped prefix, then ``packed-refs`` (one line per ref; the skipped ones are dropped by a
string test). Loose refs are read before ``packed-refs``, as git does: ``git pack-refs``
writes ``packed-refs`` before it deletes the loose files, and a deletion rewrites
``packed-refs`` before it deletes the loose file, so no ref is ever missed in between.

Only what this can read with certainty is answered: a symbolic link, an unreadable or
malformed file, a name git would not accept, a symbolic ref whose target is not found among
the refs read, or a repository using another ref storage makes ``refs_outside`` return None,
and the caller asks git (``refs.for_each_ref``), which then decides as it always has.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

_OID = re.compile(rb"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# Conservative: what ``git check-ref-format`` accepts, minus what is rare enough to leave to git.
_COMPONENT = re.compile(r"[A-Za-z0-9_+,=%-][A-Za-z0-9._+,=%@-]*")
_MAX_SYMREF_DEPTH = 5


class _Unsure(Exception):
    """Something git itself must judge."""


def _name_ok(name: str) -> bool:
    if ".." in name or "@{" in name or name.endswith("/"):
        return False
    return all(_COMPONENT.fullmatch(c) and not c.endswith((".lock", "."))
               for c in name.split("/"))


def _loose(common: Path, skip: str, out: dict[str, bytes]) -> None:
    """Every loose ref file under ``refs/`` (content, stripped) but those under ``skip``."""
    stack = ["refs/"]
    while stack:
        rel = stack.pop()
        if rel == skip:
            continue
        try:
            entries = list(os.scandir(common / rel))
        except FileNotFoundError:
            continue  # removed meanwhile (an empty directory git pruned)
        except OSError as exc:
            raise _Unsure from exc
        for e in entries:
            if e.name.startswith(".") or e.name.endswith(".lock"):
                continue  # what git's loose-ref reader skips too
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _Unsure from exc
            if stat.S_ISDIR(mode):
                stack.append(f"{rel}{e.name}/")
            elif stat.S_ISREG(mode):
                name = rel + e.name
                if name.startswith(skip):
                    continue
                try:
                    with open(e.path, "rb") as f:
                        data = f.read(4096)
                except FileNotFoundError:
                    continue  # deleted meanwhile: packed-refs (read after) holds it if it is
                except OSError as exc:
                    raise _Unsure from exc
                out[name] = data.strip()
            else:
                raise _Unsure(e.path)  # a symbolic link or stranger: git decides


def _packed(common: Path, skip: str) -> dict[str, bytes]:
    try:
        data = (common / "packed-refs").read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _Unsure from exc
    data = _cut(data, skip.encode())
    out: dict[str, bytes] = {}
    for line in data.split(b"\n"):
        if not line or line[0] in b"#^":
            continue  # the header and peeled lines
        oid, sp, name = line.partition(b" ")
        if not sp or not _OID.fullmatch(oid):
            raise _Unsure("packed-refs line")
        n = name.decode(errors="surrogateescape")
        if n in out:
            raise _Unsure(n)  # git never writes a name twice; which one it reads is its call
        if not n.startswith(skip):
            out[n] = oid
    return out


def _cut(data: bytes, skip: bytes) -> bytes:
    """``packed-refs`` without the block of lines under ``skip`` when git wrote it sorted (its
    header says so): one search instead of a loop over thousands of uet's own lines.

    The header is the file's word, and a tool can write the file: the block is dropped only
    when every line in it is a ref under ``skip`` or a peeled line (counted, in C), since git
    lists any other line hidden there. Otherwise the whole file is read line by line.
    """
    if not data.startswith(b"# pack-refs with:") or b" sorted" not in data[:data.find(b"\n")]:
        return data
    first = data.find(b" " + skip)
    if first < 0:
        return data
    last = data.rfind(b" " + skip)
    start = data.rfind(b"\n", 0, first) + 1
    end = data.find(b"\n", last)
    block = data[start:end if end >= 0 else len(data)]
    refs = block.count(b" " + skip)
    # Every space starts " refs/uet/..." and every line is a ref or a peeled line: git reads a
    # ref line as "<oid> <name>" (one space), so no line of another name is hidden in it.
    if block.count(b" ") != refs or block.count(b"\n") + 1 != refs + block.count(b"\n^"):
        return data
    return data[:start] + (data[end + 1:] if end >= 0 else b"")


def _resolve(name: str, loose: dict[str, bytes], packed: dict[str, bytes]) -> str:
    for _ in range(_MAX_SYMREF_DEPTH):
        value = loose.get(name, packed.get(name))
        if value is None:
            raise _Unsure(name)  # a dangling symbolic ref, or one into the skipped prefix
        if value.startswith(b"ref:"):
            name = value[4:].strip().decode(errors="surrogateescape")
            continue
        if not _OID.fullmatch(value):
            raise _Unsure(name)
        return value.decode()
    raise _Unsure(name)


def refs_outside(common_dir: Path, skip: str = "refs/uet/") -> dict[str, str] | None:
    """``{refname: oid}`` of every ref (symbolic ones resolved, as ``git for-each-ref``'s
    ``%(objectname)``) whose name does not start with ``skip`` (a prefix ending in ``/``),
    sorted by name; None when git must be asked (see the module doc)."""
    common = Path(common_dir)
    try:
        if _reftable(common):
            return None
        loose: dict[str, bytes] = {}
        _loose(common, skip, loose)
        packed = _packed(common, skip)
        out: dict[str, str] = {}
        for name in sorted(loose.keys() | packed.keys()):
            if not _name_ok(name):
                return None
            out[name] = _resolve(name, loose, packed)
    except _Unsure:
        return None
    return out


def _reftable(common: Path) -> bool:
    """A ``reftable`` directory: refs not in files (git >= 2.45); also any doubt about it."""
    try:
        os.lstat(common / "reftable")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


__all__ = ["refs_outside"]
