"""pygit2 repository handles: opened, bounded and freed here.

A ``pygit2.Repository`` is in a reference cycle of its own making (its ``branches``,
``references``, ``remotes`` and ``submodules`` helpers point back at it), so dropping the last
reference frees nothing: libgit2's repository (object cache, index, config, odb) lives on until
Python's cyclic collector happens to visit it, which for a long run's old generation is rarely.
Every handle uet opens is therefore released with ``Repository.free()`` as soon as it is done
with: ``opened`` for a handle used within one call (a worker slot's admin dir), ``ThreadHandle``
for the one a thread keeps (``Repo._pg``), freed when its thread or its ``Repo`` goes.

libgit2 caches every commit and tree it parses (up to 4 KiB each) in the handle's object cache,
and evicts only once all caches together pass ``git_cache__max_storage``, 256 MiB by default: a
long run's per-thread handles each kept the commits and trees of every workstream they looked
at. The limit is set once, at import, to what a run's working set needs (the integration tip's
trees, the commits being merged); past it libgit2 evicts from the cache storing, and re-reads
an evicted object from disk when asked again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pygit2

OBJECT_CACHE_BYTES = 8 * 1024 * 1024

pygit2.settings.cache_max_size(OBJECT_CACHE_BYTES)

# What reading or writing through a handle raises when libgit2 cannot do it as git would (an
# odd index, config or ref, a missing object, a file gone): the in-process fast paths catch
# these and leave the job to the git CLI.
IN_PROCESS_ERRORS = (pygit2.GitError, KeyError, ValueError, TypeError, OSError)


@contextmanager
def opened(path: str | os.PathLike[str]) -> Iterator[pygit2.Repository]:
    """A pygit2 handle on the repository at ``path`` (opened as ``pygit2.Repository`` does),
    freed on leaving the block. Objects read through it stay usable (libgit2 reopens what they
    need), but must not be kept past the block."""
    repo = pygit2.Repository(os.fspath(path))
    try:
        yield repo
    finally:
        repo.free()


class ThreadHandle:
    """The pygit2 handle one thread keeps for a ``Repo``, held in the ``Repo``'s
    ``threading.local``: when the thread ends or the ``Repo`` is dropped, that local's entry
    goes, and with it this holder (nothing else refers to it), which frees the handle."""

    __slots__ = ("repo",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.repo = pygit2.Repository(os.fspath(path))

    def __del__(self) -> None:
        repo = getattr(self, "repo", None)
        if repo is not None:
            repo.free()
