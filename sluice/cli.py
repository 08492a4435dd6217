"""The ``sluice`` command line."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Any


class UsageError(Exception):
    """A command line the user must fix; ``main`` prints it and exits with status 2."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sluice`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from sluice import __version__

        print(__version__)
        return 0
    if args.command == "cleanup":
        from sluice.store.shm import cleanup_stale_sessions

        print(f"removed {cleanup_stale_sessions()} stale shared-memory segment(s)")
        return 0
    if args.command == "plan":
        try:
            return plan_command(args.target, out=args.out, logical=args.logical,
                                explain=args.explain, verbose=args.verbose,
                                optimize=not args.no_optimize)
        except UsageError as exc:
            print(f"sluice plan: error: {exc}", file=sys.stderr)
            return 2
    if args.command in ("start", "status", "stop"):
        from sluice.executor.cluster import cli as cluster_cli

        return cluster_cli.run(args)
    if args.command == "serve":
        from sluice.libs.serve import cli as serve_cli

        return serve_cli.run(args)
    if args.command == "job":
        from sluice.dashboard import job_cli

        return job_cli.run(args)
    if args.command in ("list", "summary", "logs"):
        from sluice.dashboard import cli as dashboard_cli

        return dashboard_cli.run(args)
    if args.command in _workflow_commands():
        from sluice.libs.workflow import cli as workflow_cli

        return workflow_cli.run(args)
    parser.print_help()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="sluice: parallel Python dataflow")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("cleanup", help="remove shared-memory files left by sluice drivers that died")
    plan = sub.add_parser(
        "plan", help="explain or draw the compiled Plan of a DAG",
        description="Import MODULE (the current directory is searched first), take ATTR (a DAG "
                    "node, a Plan, or a function of no arguments returning one), compile it and "
                    "print its explain() text, or draw it with -o.")
    plan.add_argument("target", metavar="MODULE:ATTR", help="e.g. mypipelines:dag")
    plan.add_argument("-o", "--out", metavar="PATH",
                      help="render the plan to PATH (.svg, .png or .pdf) and print PATH")
    plan.add_argument("--logical", action="store_true",
                      help="with -o, draw the logical graph (one node per op) instead of stages")
    plan.add_argument("--explain", action="store_true",
                      help="print the explain() text (the default when -o is not given)")
    plan.add_argument("--verbose", action="store_true", help="explain each op of each stage")
    plan.add_argument("--no-optimize", action="store_true",
                      help="compile with optimize=False (no CSE, no fusion)")
    from sluice.dashboard import cli as dashboard_cli
    from sluice.dashboard import job_cli
    from sluice.executor.cluster import cli as cluster_cli
    from sluice.libs.workflow import cli as workflow_cli

    from sluice.libs.serve import cli as serve_cli

    cluster_cli.add_parsers(sub)
    dashboard_cli.add_parsers(sub)
    job_cli.add_parsers(sub)
    workflow_cli.add_parsers(sub)
    serve_cli.add_parsers(sub)
    return parser


def _workflow_commands() -> tuple[str, ...]:
    """``scheduler``, ``schedule``, ``backfill``, ``workflow``: see sluice/libs/workflow/cli.py."""
    from sluice.libs.workflow import cli as workflow_cli

    return workflow_cli.COMMANDS


def plan_command(target: str, out: str | None = None, logical: bool = False,
                 explain: bool = False, verbose: bool = False, optimize: bool = True) -> int:
    """``sluice plan``: print the Plan of ``target`` and/or render it to ``out``.

    Raises :class:`UsageError` for a target or option the user must fix.
    """
    if logical and out is None:
        raise UsageError("--logical chooses what -o draws; add -o PATH (e.g. -o plan.svg)")
    plan = load_plan(target, optimize=optimize)
    if explain or out is None:
        print(plan.explain(verbose=verbose))
    if out is not None:
        try:
            plan.visualize(out, level="logical" if logical else "physical")
        except ValueError as exc:  # an unknown suffix
            raise UsageError(str(exc)) from None
        print(out)
    return 0


def load_plan(target: str, optimize: bool = True) -> Any:
    """The Plan named by ``MODULE:ATTR``: a Plan as is, a DAG node compiled, or a
    function of no arguments called first and its result taken as above."""
    from sluice.compiler.plan import Plan

    value = _import_target(target)
    if _is_factory(value):
        _check_no_arguments(value, target)
        value = value()
        if isinstance(value, Plan):
            return value
        _check_dag(value, f"{target}() returned {_describe(value)}")
    elif not isinstance(value, Plan):
        _check_dag(value, f"{target} is {_describe(value)}")
    if isinstance(value, Plan):
        return value
    import sluice

    return sluice.compile(value, optimize=optimize)


def _import_target(target: str) -> Any:
    """The object ``MODULE:ATTR`` names, the current directory searched first."""
    from sluice.dsl.targets import TargetError, import_target

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return import_target(target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None


def _is_factory(value: Any) -> bool:
    """A plain callable that builds the DAG (not a node, Plan, remote function or class)."""
    from sluice.compiler.plan import Plan
    from sluice.dsl.actor import ActorClass
    from sluice.dsl.nodes import DAGNode
    from sluice.dsl.remote import RemoteFunction

    return callable(value) and not isinstance(
        value, (DAGNode, Plan, RemoteFunction, ActorClass, type))


def _check_no_arguments(function: Any, target: str) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: just try the call
        return
    try:
        signature.bind()
    except TypeError:
        raise UsageError(f"{target} is a function that needs arguments {signature}; point at "
                         "a DAG or at a function of no arguments that returns one") from None


def _check_dag(value: Any, what: str) -> None:
    from sluice.dsl.nodes import DAGNode

    if not isinstance(value, DAGNode):
        raise UsageError(f"{what}, not a DAG; point at a graph built with .bind() "
                         "(e.g. dag = f.bind(InputNode())), a Plan, or a function returning one")


def _describe(value: Any) -> str:
    from sluice.dsl.actor import ActorClass
    from sluice.dsl.remote import RemoteFunction

    if isinstance(value, RemoteFunction):
        return f"the remote function {value._name} (bind it: {value._name}.bind(...))"
    if isinstance(value, ActorClass):
        return f"the actor class {value._name} (bind it: {value._name}.bind(...))"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


if __name__ == "__main__":
    sys.exit(main())
