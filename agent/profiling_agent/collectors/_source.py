"""Recover a function's qualified name and first line from (file, function name, current line).

memray reports ``co_name`` and the line being executed, while the raw format wants the
qualified name and the def line (``co_firstlineno``, which is the first decorator's line) so
that the same function from different engines is the same frame. The source file, parsed once,
tells both. Anything that cannot be resolved keeps memray's values.

One resolver serves the process (``shared()``): parsing a service's files again in every window
was most of the agent's own CPU per window (0.16 of 0.19 s for a goroutine window of the
overhead benchmark's workload). It forgets everything past ``_MAX_FILES`` files or
``_MAX_LINES`` lines, so its memory stays bounded in a process that keeps loading code.
"""

from __future__ import annotations

import _thread
import ast
import linecache
from bisect import bisect_right

_MAX_FILES = 2000
_MAX_LINES = 200_000
# ast.parse from two threads at once raised "SystemError: AST constructor recursion depth
# mismatch" on 3.11 (collectors resolve names from several threads): one parse at a time.
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
        scopes = None
        if filename and not filename.startswith("<"):
            try:
                source = "".join(linecache.getlines(filename))
                if source and len(source) <= _MAX_SOURCE_CHARS:
                    with _parse_lock:
                        tree = ast.parse(source, filename)
                    scopes = sorted(_collect(tree))
            except (SyntaxError, ValueError, RecursionError, MemoryError, OSError, SystemError):
                scopes = None
        self._files[filename] = scopes
        if scopes:
            self._starts[filename] = [scope[0] for scope in scopes]
        return scopes


_shared = SourceResolver()


def shared() -> SourceResolver:
    """The process's resolver; safe from several collector threads (dict operations are atomic,
    a file parsed twice at once gives the same scopes)."""
    return _shared


def _collect(tree: ast.AST) -> list[_Scope]:
    out: list[_Scope] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.append((first, child.end_lineno or child.lineno, first, child.name,
                            qualname))
                visit(child, qualname + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.Lambda):
                qualname = prefix + "<lambda>"
                out.append((child.lineno, child.end_lineno or child.lineno, child.lineno,
                            "<lambda>", qualname))
                visit(child, qualname + ".<locals>.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out
