"""What ``git fsck --strict`` would reject in the trees a patch adds, before it is queued.

A tool can commit a tree no well-behaved git would write: a ``.gitmodules`` whose URL is a
command-line option (``--upload-pack=...``), a directory named ``.git`` (or ``.GIT``,
``git~1``, ``.git.``, ``.g\\u200cit``: what NTFS and HFS+ read as ``.git``), ``..`` entries,
bad modes. Landing one poisons the user's branch: ``git fsck --strict`` fails on it from then
on, and clones with ``transfer.fsckObjects`` refuse it. ``tree_problems(repo, base, new)``
reads the raw tree objects (git's parsers would normalise a zero-padded mode or hide a
duplicate) and checks every entry ``new`` adds or changes relative to ``base``, skipping equal
subtrees, with the rules of git's ``fsck_tree``/``fsck_blob`` (fsck.c, path.c, utf8.c):

- entry names: empty, ``.``, ``..``, containing ``/``, and ``.git`` in any case or any
  NTFS/HFS+ alias (trailing dots and spaces, ``:stream``, ``git~1``, Unicode code points HFS+
  ignores);
- modes: only 100644, 100755, 120000, 40000 and 160000 (git's fsck only warns on the others,
  exit 0; they are refused here all the same); a zero-padded one; a null object id; duplicate
  or unsorted entries;
- ``.gitmodules`` (and its aliases) at any depth: a symbolic link, not a blob, missing; names
  with a ``..`` component or empty; ``url`` starting with ``-``, with a newline once
  url-decoded, escaping its root with ``../`` or an http(s)/ftp(s) URL without a host; ``path``
  starting with ``-``; ``update`` running a command (``!``) — and, stricter than git, starting
  with ``-``;
- ``.gitattributes`` (and aliases): a line over 2048 bytes or a blob over 100 MB.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pygit2

from uet_git.gitrepo.repo import GitError, Repo, run_git

_GOOD_MODES = {b"100644", b"100755", b"120000", b"40000", b"160000"}
_TREE_MODE = b"40000"
_LINK_MODE = b"120000"
# Code points HFS+ ignores when comparing names (utf8.c: next_hfs_char).
_HFS_IGNORED = {0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070),
                0xFEFF}
ATTR_MAX_LINE = 2048
ATTR_MAX_SIZE = 100 * 1024 * 1024

_Raw = tuple[bytes, bytes, bytes]  # (mode, name, raw oid)


def _parse_tree(data: bytes, oid_len: int) -> Iterator[_Raw] | None:
    """The raw entries of a tree object, in stored order; None if it cannot be parsed."""
    out: list[_Raw] = []
    i = 0
    while i < len(data):
        sp = data.find(b" ", i)
        nul = data.find(b"\0", sp + 1) if sp >= 0 else -1
        if sp < 0 or nul < 0 or nul + 1 + oid_len > len(data):
            return None
        out.append((data[i:sp], data[sp + 1:nul], data[nul + 1:nul + 1 + oid_len]))
        i = nul + 1 + oid_len
    return iter(out)


# --------------------------------------------------------------------------- names


def _hfs_is(name: bytes, needle: str) -> bool:
    """``name`` reads as ``.`` + ``needle`` on HFS+ (case-folded ASCII, ignorables skipped)."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    chars = [c for c in text if ord(c) not in _HFS_IGNORED]
    want = "." + needle
    if len(chars) != len(want):
        return False
    return all(ord(c) < 128 and c.lower() == w for c, w in zip(chars, want, strict=True))


def _ntfs_is(name: bytes, needle: str, shortname: str) -> bool:
    """git's ``is_ntfs_dot_generic``: ``.needle``, ``needl~N``, or the hashed 8.3 fall-back
    name, followed only by spaces, dots, or an alternate data stream (``:``)."""
    n = name.decode("latin-1")

    def tail_ok(rest: str) -> bool:
        for c in rest:
            if c == ":":
                return True
            if c not in " .":
                return False
        return True

    if n[:1] == "." and n[1:1 + len(needle)].lower() == needle:
        return tail_ok(n[1 + len(needle):])
    if n[:6].lower() == needle[:6] and n[6:7] == "~" and n[7:8] in "1234" and len(n) > 7:
        return tail_ok(n[8:])
    saw_tilde = False
    i = 0
    while i < 8:
        if i >= len(n):
            return False
        c = n[i]
        if saw_tilde:
            if not "0" <= c <= "9":
                return False
        elif c == "~":
            i += 1
            if i >= len(n) or not "1" <= n[i] <= "9":
                return False
            saw_tilde = True
        elif i >= 6 or ord(c) & 0x80 or c.lower() != shortname[i]:
            return False
        i += 1
    return tail_ok(n[8:])


def _is_dotgit(name: bytes) -> bool:
    """``.git`` as NTFS or HFS+ would read it (git's is_ntfs_dotgit / is_hfs_dotgit)."""
    if _hfs_is(name, "git"):
        return True
    n = name.decode("latin-1").lower()
    if n.startswith(".git"):
        rest = n[4:]
    elif n.startswith("git~1"):
        rest = n[5:]
    else:
        return False
    for c in rest:
        if c in "\\/:":
            return True
        if c not in ". ":
            return False
    return True


def _is_gitmodules(name: bytes) -> bool:
    return _hfs_is(name, "gitmodules") or _ntfs_is(name, "gitmodules", "gi7eba")


def _is_gitattributes(name: bytes) -> bool:
    return _hfs_is(name, "gitattributes") or _ntfs_is(name, "gitattributes", "gi7d29")


def _show(name: bytes) -> str:
    text = name.decode("utf-8", errors="backslashreplace")
    return text if text.isprintable() and text.strip() == text and text else repr(text)


# --------------------------------------------------------------------------- .gitmodules


def _url_problem(url: str) -> str | None:
    if url.startswith("-"):
        return "starts with '-' (read as a command-line option)"
    decoded = urllib.parse.unquote_to_bytes(url)
    relative = url.startswith(("./", "../", ".\\", "..\\"))
    if relative or url.startswith("git://"):
        if b"\n" in decoded:
            return "holds a newline once url-decoded"
        rest, dotdots = url, 0
        while True:
            if rest.startswith(("../", "..\\")):
                rest, dotdots = rest[3:], dotdots + 1
            elif rest.startswith(("./", ".\\")):
                rest = rest[2:]
            else:
                break
        if dotdots and rest[:1] in (":", "/"):
            return "escapes its root with '../'"
        return None
    curl = None
    for p in ("http::", "https::", "ftp::", "ftps::"):
        if url.startswith(p):
            curl = url[len(p):]
    if curl is None and url.startswith(("http://", "https://", "ftp://", "ftps://")):
        curl = url
    if curl is not None:
        if b"\n" in decoded:
            return "holds a newline once url-decoded"
        _scheme, sep, rest = curl.partition("://")
        host = rest.split("/", 1)[0].rpartition("@")[2] if sep else ""
        if not sep or not host:
            return "has no host"
    return None


def _name_problem(name: str) -> bool:
    if not name:
        return True
    return any(part == ".." for part in name.replace("\\", "/").split("/"))


def _gitmodules_problems(repo: Repo, oid: str, where: str) -> list[str]:
    proc = run_git(["config", "--blob", oid, "--null", "--list"], cwd=repo.workdir, check=False)
    if proc.returncode != 0:
        return []  # unparseable: git fsck only notes it (gitmodulesParse is info)
    out: list[str] = []
    for item in proc.stdout.decode(errors="surrogateescape").split("\0"):
        if not item:
            continue
        key, nl, value = item.partition("\n")
        section, _, rest = key.partition(".")
        sub, dot, var = rest.rpartition(".")
        if section != "submodule" or not dot:
            continue
        if _name_problem(sub):
            out.append(f"{where}: submodule name {sub!r} is not allowed (empty or a '..' "
                       "component)")
        if not nl:
            continue
        if var == "url" and (why := _url_problem(value)):
            out.append(f"{where}: submodule {sub!r} url {value!r} {why}")
        elif var == "path" and value.startswith("-"):
            out.append(f"{where}: submodule {sub!r} path {value!r} starts with '-'")
        elif var == "update" and value.startswith(("!", "-")):
            out.append(f"{where}: submodule {sub!r} update {value!r} "
                       + ("runs a command" if value.startswith("!") else "starts with '-'"))
    return out


def _gitattributes_problems(data: bytes, where: str) -> list[str]:
    if len(data) > ATTR_MAX_SIZE:
        return [f"{where}: over {ATTR_MAX_SIZE} bytes"]
    if any(len(line) > ATTR_MAX_LINE for line in data.split(b"\n")):
        return [f"{where}: has a line over {ATTR_MAX_LINE} bytes"]
    return []


# --------------------------------------------------------------------------- the walk


def _sort_key(mode: bytes, name: bytes) -> bytes:
    return name + b"/" if mode.lstrip(b"0") == _TREE_MODE else name


def tree_problems(repo: Repo, base: str, new: str) -> list[str]:
    """One line per entry that ``new`` (a commit or tree) adds or changes relative to
    ``base`` and that ``git fsck --strict`` would reject; empty when there is none."""
    odb = repo._pg.odb
    base_tree = _tree_of(odb, _resolve(repo, base)) if base else None
    new_tree = _tree_of(odb, _resolve(repo, new))
    if new_tree is None:
        return [f"{new}: not a commit or a tree in this repository"]
    out: list[str] = []
    _check(repo, odb, base_tree, new_tree, "", out)
    return out


def _resolve(repo: Repo, rev: str) -> str:
    """An object id as is; a rev (``HEAD``, a branch) to the object it names."""
    if len(rev) in (40, 64) and all(c in "0123456789abcdef" for c in rev):
        return rev
    try:
        return str(repo._pg.revparse_single(rev).id)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise GitError(f"{rev}: no such commit or tree") from exc


def _tree_of(odb: pygit2.Odb, oid: str) -> str | None:
    """The tree a commit (or tag of one) points to, read from the raw object: libgit2 refuses
    to load a hostile tree, and that tree is exactly what is to be looked at."""
    for _ in range(10):
        got = _read(odb, oid)
        if got is None:
            return None
        kind, data = got
        if kind == pygit2.enums.ObjectType.TREE:
            return oid
        if kind not in (pygit2.enums.ObjectType.COMMIT, pygit2.enums.ObjectType.TAG):
            return None
        first = data.split(b"\n", 1)[0].split(b" ")
        if len(first) != 2 or first[0] not in (b"tree", b"object"):
            return None
        oid = first[1].decode(errors="replace")
    return None


def _read(odb: pygit2.Odb, oid: str) -> tuple[int, bytes] | None:
    try:
        kind, data = odb.read(oid)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return int(kind), bytes(data)


def _check(repo: Repo, odb: pygit2.Odb, base: str | None, tree: str, prefix: str,
           out: list[str]) -> None:
    where_tree = prefix.rstrip("/") or "the root tree"
    got = _read(odb, tree)
    if got is None or got[0] != pygit2.enums.ObjectType.TREE:
        out.append(f"{where_tree}: tree {tree[:12]} is missing or not a tree")
        return
    oid_len = len(tree) // 2
    entries = _parse_tree(got[1], oid_len)
    if entries is None:
        out.append(f"{where_tree}: tree {tree[:12]} cannot be parsed")
        return
    old: dict[bytes, tuple[bytes, bytes]] = {}
    if base is not None:
        bgot = _read(odb, base)
        if bgot is not None and bgot[0] == pygit2.enums.ObjectType.TREE:
            for m, n, o in _parse_tree(bgot[1], oid_len) or ():
                old.setdefault(n, (m, o))
    seen: set[bytes] = set()
    last: bytes | None = None
    for mode, name, raw in entries:
        path = prefix + _show(name)
        if name in seen:
            out.append(f"{path}: duplicate entry in {where_tree}")
        seen.add(name)
        key = _sort_key(mode, name)
        if last is not None and key < last:
            out.append(f"{path}: entries of {where_tree} are not sorted as git sorts them")
        last = key
        if old.get(name) == (mode, raw):
            continue  # unchanged: base's own business
        oid = raw.hex()
        out += _entry_problems(repo, odb, mode, name, oid, path)
        if mode == _TREE_MODE:
            bm, bo = old.get(name, (b"", b""))
            _check(repo, odb, bo.hex() if bm == _TREE_MODE else None, oid, path + "/", out)


def _entry_problems(repo: Repo, odb: pygit2.Odb, mode: bytes, name: bytes, oid: str,
                    path: str) -> list[str]:
    out: list[str] = []
    if name == b"":
        out.append(f"{path}: empty entry name")
    elif name in (b".", b".."):
        out.append(f"{path}: entry named {name.decode()!r}")
    elif b"/" in name:
        out.append(f"{path}: entry name contains '/'")
    elif _is_dotgit(name):
        out.append(f"{path}: entry named like .git (git refuses to check it out)")
    if mode[:1] == b"0":
        out.append(f"{path}: zero-padded mode {mode.decode(errors='replace')}")
    elif mode not in _GOOD_MODES:
        out.append(f"{path}: bad mode {mode.decode(errors='replace')}")
    if set(oid) == {"0"}:
        out.append(f"{path}: points to the null object id")
    if _is_gitmodules(name):
        if mode.lstrip(b"0") == _LINK_MODE:
            out.append(f"{path}: .gitmodules is a symbolic link")
        else:
            hdr = _header(odb, oid)
            if hdr is None:
                out.append(f"{path}: .gitmodules blob {oid[:12]} is missing")
            elif hdr != pygit2.enums.ObjectType.BLOB:
                out.append(f"{path}: .gitmodules is not a blob")
            else:
                out += _gitmodules_problems(repo, oid, path)
    elif _is_gitattributes(name) and mode.lstrip(b"0") != _LINK_MODE:
        got = _read(odb, oid)
        if got is not None and got[0] == pygit2.enums.ObjectType.BLOB:
            out += _gitattributes_problems(got[1], path)
    return out


def _header(odb: pygit2.Odb, oid: str) -> int | None:
    try:
        kind, _size = odb.read_header(oid)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return int(kind)


__all__ = ["ATTR_MAX_LINE", "ATTR_MAX_SIZE", "tree_problems"]
