"""`python -m profiling_agent run [options] -- script.py [args]` (or `-m module`, `-c code`).

Starts the agent in this process, then runs the target the way `python` itself would: as
`__main__`, with `sys.argv` set to the target's argv and `sys.path[0]` set to the script's
directory (or the current directory for `-m`). The target's exit code, stdout and stderr stay its
own: SystemExit passes through, an uncaught exception prints its traceback and exits 1.
"""

from __future__ import annotations

import argparse
import builtins
import importlib.util
import logging
import os
import runpy
import sys
import types
import zipfile
from collections.abc import Sequence
from types import TracebackType

from .client import AGENT_VERSION
from .runtime import start_from_env

_USAGE_EXAMPLES = """\
examples:
  python -m profiling_agent run -- app.py --port 8000
  python -m profiling_agent run --service worker -- -m celery -A proj worker
  PROFILING_SERVER_URL=http://profiling:8088 PROFILING_TENANT_ID=550e8400 \\
  PROFILING_TOKEN=... PROFILING_SERVICE=ai-service python -m profiling_agent run -- app.py

Options default to the PROFILING_* environment variables. Prefer PROFILING_TOKEN over --token:
command lines are visible to other users of the machine (ps).
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m profiling_agent",
        description="Profiling agent: runs a Python program with the agent started in-process.",
        epilog=_USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"profiles-agent {AGENT_VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a script or module with the agent started",
        usage="python -m profiling_agent run [options] -- (script.py | -m module | -c code) [args ...]",
        epilog=_USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--server", metavar="URL", help="server URL (PROFILING_SERVER_URL)")
    run.add_argument("--tenant", metavar="ID", help="tenant id (PROFILING_TENANT_ID)")
    run.add_argument("--token", metavar="TOKEN", help="agent token (PROFILING_TOKEN)")
    run.add_argument("--service", metavar="NAME", help="service name (PROFILING_SERVICE)")
    run.add_argument(
        "--poll-seconds", metavar="S", help="seconds between polls (PROFILING_POLL_SECONDS, 5)"
    )
    run.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=os.environ.get("PROFILING_LOG_LEVEL", "WARNING"),
        help="agent messages on stderr: DEBUG, INFO, WARNING, ERROR or OFF "
        "(PROFILING_LOG_LEVEL, WARNING)",
    )
    run.add_argument("target", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _split_target(argv: list[str]) -> tuple[list[str], list[str] | None]:
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    return argv[:index], argv[index + 1 :]


def _configure_logging(level_name: str) -> None:
    name = (level_name or "").strip().upper()
    if name in ("OFF", "NONE", "0", "FALSE"):
        return
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("profiling_agent")
    logger.addHandler(handler)
    logger.setLevel(level)


def _start_agent(args: argparse.Namespace) -> None:
    environ = dict(os.environ)
    for option, variable in (
        ("server", "PROFILING_SERVER_URL"),
        ("tenant", "PROFILING_TENANT_ID"),
        ("token", "PROFILING_TOKEN"),
        ("service", "PROFILING_SERVICE"),
        ("poll_seconds", "PROFILING_POLL_SECONDS"),
    ):
        value = getattr(args, option)
        if value:
            environ[variable] = value
    start_from_env(environ)


def _wrapper_frames() -> set[str]:
    return {_run_target.__code__.co_filename, runpy.run_path.__code__.co_filename}


def _without_wrapper_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the leading frames of this module and runpy, so the traceback reads like python's."""
    skip = _wrapper_frames()
    while tb is not None and tb.tb_frame.f_code.co_filename in skip:
        tb = tb.tb_next
    return tb


def _check_target(target: list[str]) -> int | None:
    """Python's own start-up errors (before the agent starts): an exit status, else None."""
    if target[0] in ("-m", "-c"):
        if len(target) < 2:
            print(f"Argument expected for the {target[0]} option", file=sys.stderr)
            return 2
        return None
    if not os.path.exists(target[0]):
        print(
            f"{sys.executable}: can't open file {os.path.abspath(target[0])!r}: "
            "[Errno 2] No such file or directory",
            file=sys.stderr,
        )
        return 2
    return None


def _run_target(target: list[str]) -> int | None:
    """Run the target as __main__; returns an exit status only when the module is not found."""
    if target[0] == "-m":
        module = target[1]
        sys.argv = ["-m", *target[2:]]  # run_module puts the module's file in argv[0]
        sys.path[0] = os.getcwd()
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            print(
                f"{sys.executable}: Error while finding module specification for {module!r} "
                f"({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
            return 1
        if spec is None:
            print(f"{sys.executable}: No module named {module}", file=sys.stderr)
            return 1
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return None

    if target[0] == "-c":
        sys.argv = ["-c", *target[2:]]
        sys.path[0] = ""
        main_module = types.ModuleType("__main__")
        main_module.__dict__["__builtins__"] = builtins
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = main_module
        try:
            exec(compile(target[1], "<string>", "exec"), main_module.__dict__)
        finally:
            sys.modules["__main__"] = saved
        return None

    script = target[0]
    sys.argv = list(target)
    if os.path.isfile(script) and not zipfile.is_zipfile(script):
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:  # a directory or zip archive with a __main__.py; run_path puts it on sys.path too
        script = sys.path[0] = os.path.abspath(script)
    runpy.run_path(script, run_name="__main__")
    return None


def main(argv: Sequence[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, after_dashes = _split_target(argv)
    parser = _build_parser()
    args = parser.parse_args(head)
    if args.command != "run":
        parser.print_help(sys.stderr)
        return 2
    if args.target:  # `run script.py ... -- ...`: the dashes belong to the script
        target = list(args.target) + ([] if after_dashes is None else ["--", *after_dashes])
    else:
        target = after_dashes or []
    if not target:
        parser.error(
            "run: a target is required: run [options] -- script.py [args] (or -- -m module)"
        )
    status = _check_target(target)
    if status is not None:
        return status
    _configure_logging(args.log_level)
    _start_agent(args)  # never raises; the program runs even without an agent
    try:
        return _run_target(target)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        # The default hook prints exc.__traceback__ (ignoring its tb argument) so trim it there.
        tb = _without_wrapper_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1


if __name__ == "__main__":
    sys.exit(main())
