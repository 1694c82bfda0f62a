"""Recover a function's qualified name and first line from (file, function name, current line).

memray reports ``co_name`` and the line being executed (and ddtrace the name and the line), while
the raw format wants the qualified name and the def line (``co_firstlineno``, which is the first
decorator's line) so that the same function from different engines is the same frame. The
file's code objects tell both: each function's name, first line, lines and (3.11+) qualified
name, as the running code's own do. They are read from the file's bytecode cache (what the
interpreter itself loaded) when that matches the source, else compiled from the source. Six
files of the stdlib, Django and the overhead benchmark took 110 ms of CPU as ``ast`` trees
walked in Python, 72 ms compiled, 17 ms from their caches. Anything that cannot be resolved
keeps the engine's values.

One resolver serves the process (``shared()``): parsing a service's files again in every window
was most of the agent's own CPU per window (0.16 of 0.19 s for a goroutine window of the
overhead benchmark's workload), and each file is compiled once however many collector threads
ask for it at once. It forgets everything past ``_MAX_FILES`` files or ``_MAX_LINES`` lines, so
its memory stays bounded in a process that keeps loading code.
"""

from __future__ import annotations

import _thread
import importlib.util
import linecache
import marshal
import os
import warnings
from bisect import bisect_right
from inspect import CO_OPTIMIZED
from types import CodeType

_MAX_FILES = 2000
_MAX_LINES = 200_000
# One compile at a time: ast.parse from two threads at once raised "SystemError: AST constructor
# recursion depth mismatch" on 3.11 (collectors resolve names from several threads), and a
# thread that finds a file being compiled waits for its scopes rather than compiling it again.
_parse_lock = _thread.allocate_lock()
_MAX_SOURCE_CHARS = 2_000_000

# per file: sorted list of (start line, end line, first line, name, qualname), or None when the
# file could not be parsed; a function starts at its first decorator, as co_firstlineno does
_Scope = tuple[int, int, int, str, str]


class SourceResolver:
    def __init__(self) -> None:
        self._files: dict[str, list[_Scope] | None] = {}
        self._starts: dict[str, list[int]] = {}
        self._cache: dict[tuple[str, str, int], tuple[str, int]] = {}

    def resolve(self, function: str, filename: str, line: int) -> tuple[str, int]:
        key = (function, filename, line)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= _MAX_LINES or len(self._files) >= _MAX_FILES:
                self.__init__()  # start over: bounded, and only ever re-parses
            hit = self._cache[key] = self._resolve(function, filename, line)
        return hit

    def _resolve(self, function: str, filename: str, line: int) -> tuple[str, int]:
        if function == "<module>":
            return function, 1
        scopes = self._scopes(filename)
        if not scopes:
            return function, line
        # innermost scope with this name that contains the line: the latest-starting one
        end = bisect_right(self._starts[filename], line)
        for start, stop, first, name, qualname in reversed(scopes[:end]):
            if start <= line <= stop and name == function:
                return qualname, first
        return function, line

    def _scopes(self, filename: str) -> list[_Scope] | None:
        if filename in self._files:
            return self._files[filename]
        with _parse_lock:
            if filename not in self._files:  # compiled while this thread waited
                scopes = _compile_scopes(filename)
                if scopes:
                    self._starts[filename] = [scope[0] for scope in scopes]
                self._files[filename] = scopes
        return self._files[filename]


_shared = SourceResolver()


def shared() -> SourceResolver:
    """The process's resolver; safe from several collector threads (dict operations are atomic,
    a file parsed twice at once gives the same scopes)."""
    return _shared


def _compile_scopes(filename: str) -> list[_Scope] | None:
    if not filename or filename.startswith("<"):
        return None
    module = _cached_code(filename)
    if module is None:
        try:
            source = "".join(linecache.getlines(filename))
            if not source or len(source) > _MAX_SOURCE_CHARS:
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a file's SyntaxWarnings are not ours to print
                module = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OSError, SystemError):
            return None
    return sorted(_functions(module, ""))


def _cached_code(filename: str) -> CodeType | None:
    """The module's code from its ``__pycache__`` file, when that was compiled from the source as
    it is now (a timestamp-checked cache: magic, flags 0, the source's mtime and size)."""
    try:
        with open(importlib.util.cache_from_source(filename), "rb") as handle:
            data = handle.read(_MAX_SOURCE_CHARS + 1)
        stat = os.stat(filename)
        if (len(data) <= _MAX_SOURCE_CHARS and data[:4] == importlib.util.MAGIC_NUMBER
                and data[4:8] == bytes(4)
                and int.from_bytes(data[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
                and int.from_bytes(data[12:16], "little") == stat.st_size & 0xFFFFFFFF):
            code = marshal.loads(memoryview(data)[16:])
            return code if isinstance(code, CodeType) else None
    except (OSError, ValueError, EOFError, TypeError, NotImplementedError):
        pass
    return None


def _functions(code: CodeType, prefix: str) -> list[_Scope]:
    """The functions (lambdas and comprehensions included) defined in ``code``, at any depth.
    Class bodies are code objects too, without CO_OPTIMIZED: they only add to the names."""
    out: list[_Scope] = []
    for const in code.co_consts:
        if not isinstance(const, CodeType):
            continue
        if const.co_flags & CO_OPTIMIZED:
            qualname = getattr(const, "co_qualname", None) or prefix + const.co_name  # 3.10: built
            lines = [line for _, _, line in const.co_lines() if line is not None]
            first = const.co_firstlineno
            out.append((first, max(lines, default=first), first, const.co_name, qualname))
            out.extend(_functions(const, qualname + ".<locals>."))
        else:
            out.extend(_functions(const, prefix + const.co_name + "."))
    return out
