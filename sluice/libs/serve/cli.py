"""``sluice serve``: run, deploy, status and shutdown of sluice.serve applications.

- ``sluice serve run MODULE:APP [KEY=VALUE ...]`` serves one app from this process on a
  runtime of its own (or a cluster's with ``--address``) until Ctrl-C or SIGTERM, then
  shuts serve down cleanly. ``APP`` is an application (``Model.bind()``) or a function
  returning one, called with the ``KEY=VALUE`` arguments (as Ray's app builders).
- ``sluice serve deploy CONFIG.yaml`` deploys the applications of a config file (Ray's
  format: ``applications`` with ``name``, ``route_prefix``, ``import_path``, ``args`` and
  ``deployments`` overriding ``num_replicas``, ``user_config``, ``autoscaling_config`` and
  the other deployment options; ``http_options``) on a cluster and returns; the apps keep
  running there.
- ``sluice serve status`` prints the cluster's applications as YAML; ``sluice serve
  shutdown`` removes them all.

``deploy``, ``status`` and ``shutdown`` talk to a cluster: ``--address``, else
``$SLUICE_ADDRESS``, else the head ``sluice start --head`` runs on this machine. Errors
are one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("serve",)
CONFIG_KEYS = ("applications", "http_options", "proxy_location", "logging_config")
APP_KEYS = ("name", "route_prefix", "import_path", "args", "deployments", "runtime_env",
            "logging_config", "external_scaler_enabled")


class UsageError(Exception):
    """A command line or config file the user must fix."""


def add_parsers(sub: Any) -> None:
    """Add ``serve`` (run, deploy, status, shutdown) to the ``sluice`` parser's subparsers."""
    serve = sub.add_parser("serve", help="run, deploy and inspect sluice.serve applications")
    actions = serve.add_subparsers(dest="action", metavar="ACTION")
    address_help = ("the cluster, sluice://HOST:PORT (default: $SLUICE_ADDRESS, else the head "
                    "`sluice start --head` runs on this machine)")
    run = actions.add_parser(
        "run", help="serve an app from this process until Ctrl-C",
        description="Import MODULE (the current directory is searched first), take APP (an "
                    "application, e.g. Model.bind(), or a function returning one, called with "
                    "the KEY=VALUE arguments), serve it over HTTP and block until Ctrl-C or "
                    "SIGTERM; then serve shuts down cleanly. Without --address it runs on a "
                    "sluice runtime of its own.")
    run.add_argument("target", metavar="MODULE:APP")
    run.add_argument("arguments", nargs="*", metavar="KEY=VALUE",
                     help="arguments of an app builder function (VALUE read as JSON when it "
                          "parses, else a string)")
    run.add_argument("--host", default="127.0.0.1", help="HTTP host (default: 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    run.add_argument("--route-prefix", default="/", help="the app's route prefix (default: /)")
    run.add_argument("--name", default="default", help="the app's name (default: default)")
    run.add_argument("--address", help="serve on this cluster instead (sluice://HOST:PORT)")
    deploy = actions.add_parser(
        "deploy", help="deploy a config file's applications on a cluster",
        description="Deploy the applications of CONFIG (Ray Serve's config format) on a "
                    "cluster and return; they keep running there.")
    deploy.add_argument("config", metavar="CONFIG.yaml")
    deploy.add_argument("--address", help=address_help)
    for action, text in (("status", "print the cluster's applications and deployments"),
                         ("shutdown", "delete every application and stop serve on a cluster")):
        actions.add_parser(action, help=text).add_argument("--address", help=address_help)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``sluice serve`` command; its exit status."""
    if args.action is None:
        print("sluice serve: error: name an action: run, deploy, status or shutdown (see "
              "`sluice serve --help`)", file=sys.stderr)
        return 2
    handler = {"run": _run, "deploy": _deploy, "status": _status, "shutdown": _shutdown}
    try:
        return handler[args.action](args)
    except UsageError as exc:
        print(f"sluice serve {args.action}: error: {exc}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------ commands

def _run(args: argparse.Namespace) -> int:
    import sluice
    from sluice.libs.serve import api

    app = build_app(args.target, parse_arguments(args.arguments))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    _connect(args.address, required=False)
    try:
        api.start(http_options={"host": args.host, "port": args.port})
        api.run(app, name=args.name, route_prefix=args.route_prefix)
        print(f"sluice serve: app {args.name!r} at http://{args.host}:{args.port}"
              f"{'' if args.route_prefix == '/' else args.route_prefix}; Ctrl-C stops it",
              file=sys.stderr, flush=True)
        stop.wait()
        print("sluice serve: shutting down", file=sys.stderr, flush=True)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            api.shutdown()
        except Exception as exc:  # noqa: BLE001 - a terminal's Ctrl-C reached serve's actors too
            print(f"sluice serve: serve's actors had stopped already ({type(exc).__name__})",
                  file=sys.stderr)
        finally:
            sluice.shutdown()
    return 0


def _deploy(args: argparse.Namespace) -> int:
    import sluice
    from sluice.libs.serve import api

    apps, http_options = read_config(args.config)
    built = [(spec, with_overrides(build_app(spec["import_path"], spec.get("args") or {}),
                                   spec.get("deployments") or [], args.config)) for spec in apps]
    _connect(args.address, required=True)
    try:
        api.start(http_options=http_options)
        for spec, app in built:
            api.run(app, name=spec.get("name", "default"),
                    route_prefix=spec.get("route_prefix", "/"))
            print(f"deployed app {spec.get('name', 'default')!r} "
                  f"({spec['import_path']}) at {spec.get('route_prefix', '/')}")
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        sluice.shutdown()
    return 0


def _status(args: argparse.Namespace) -> int:
    import sluice
    from sluice.libs.serve import api

    _connect(args.address, required=True)
    try:
        print(status_yaml(api.status()), end="")
    finally:
        sluice.shutdown()
    return 0


def _shutdown(args: argparse.Namespace) -> int:
    import sluice
    from sluice.libs.serve import api

    _connect(args.address, required=True)
    try:
        api.shutdown()
    finally:
        sluice.shutdown()
    print("serve shut down")
    return 0


# ------------------------------------------------------------------------------- helpers

def _connect(address: str | None, required: bool) -> None:
    """Connect to the cluster named by ``address`` (or found as ``init(address="auto")``
    finds one); with neither and not ``required``, start a runtime of our own."""
    import sluice

    if address is None and not required:
        sluice.init()
        return
    try:
        sluice.init(address=address or "auto")
    except ConnectionError as exc:
        raise UsageError(f"no sluice cluster to connect to ({exc}); start one with `sluice "
                         f"start --head` or give --address sluice://HOST:PORT") from None


def build_app(target: str, arguments: dict[str, Any]) -> Any:
    """The application ``target`` (``MODULE:ATTR``) names: an Application as is, or a function
    called with ``arguments`` that returns one."""
    import importlib

    from sluice.libs.serve.deployment import Application

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{target!r} is not MODULE:APP, e.g. myapp:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r} for {target!r}: {exc}") from None
    value = getattr(module, attr, None)
    if value is None:
        raise UsageError(f"module {module_name!r} has no {attr!r} (for {target!r})")
    if not isinstance(value, Application) and callable(value):
        value = value(arguments) if arguments else value({})
    elif arguments:
        raise UsageError(f"{target} is an application, not a builder function: it takes no "
                         f"arguments (got {sorted(arguments)})")
    if not isinstance(value, Application):
        raise UsageError(f"{target} gave {type(value).__name__}, not an application; give "
                         f"Deployment.bind(...) or a function returning one")
    return value


def parse_arguments(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict (VALUE read as JSON when it parses).

    >>> parse_arguments(["n=3", "name=x"])
    {'n': 3, 'name': 'x'}
    """
    arguments: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"argument {item!r} is not KEY=VALUE")
        try:
            arguments[key] = json.loads(text)
        except ValueError:
            arguments[key] = text
    return arguments


def read_config(path: str) -> tuple[list[dict], dict | None]:
    """The applications and http_options of a Ray Serve config file, checked."""
    import yaml

    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not YAML: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("applications"), list):
        raise UsageError(f"{path} must be a mapping with an 'applications' list (Ray Serve's "
                         f"config format)")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {unknown}; known: {list(CONFIG_KEYS)}")
    names, prefixes = set(), set()
    for i, app in enumerate(config["applications"]):
        where = f"{path}: applications[{i}]"
        if not isinstance(app, dict) or not isinstance(app.get("import_path"), str):
            raise UsageError(f"{where} needs an import_path (MODULE:APP)")
        unknown = sorted(set(app) - set(APP_KEYS))
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {unknown}; known: {list(APP_KEYS)}")
        name, prefix = app.get("name", "default"), app.get("route_prefix", "/")
        if name in names:
            raise UsageError(f"{where}: a second application named {name!r}; names must differ")
        if prefix is not None and prefix in prefixes:
            raise UsageError(f"{where}: route_prefix {prefix!r} is taken by another application")
        names.add(name)
        prefixes.add(prefix)
    return config["applications"], config.get("http_options")


def with_overrides(app: Any, deployments: list[dict], where: str) -> Any:
    """``app`` with each listed deployment's options replaced (matched by ``name``)."""
    from sluice.libs.serve.deployment import Application

    overrides: dict[str, dict] = {}
    for entry in deployments:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise UsageError(f"{where}: each deployments entry needs a name")
        overrides[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
    found: set[str] = set()

    def rebuild(value: Any) -> Any:
        if isinstance(value, Application):
            deployment = value.deployment
            changes = overrides.get(deployment.name)
            if changes is not None:
                found.add(deployment.name)
                try:
                    deployment = deployment.options(**changes)
                except (TypeError, ValueError) as exc:
                    raise UsageError(f"{where}: deployment {deployment.name!r}: {exc}") from None
            return Application(deployment, tuple(rebuild(a) for a in value.args),
                               {k: rebuild(v) for k, v in value.kwargs.items()})
        if isinstance(value, (list, tuple)):
            return type(value)(rebuild(v) for v in value)
        if isinstance(value, dict):
            return {k: rebuild(v) for k, v in value.items()}
        return value

    rebuilt = rebuild(app)
    missing = sorted(set(overrides) - found)
    if missing:
        raise UsageError(f"{where}: no deployment named {missing} in the app")
    return rebuilt


def status_yaml(status: Any) -> str:
    """``serve.status()`` as YAML, in the shape of Ray's ``serve status``."""
    import yaml

    apps = {}
    for name, app in status.applications.items():
        apps[name] = {
            "status": app.status, "message": app.message, "route_prefix": app.route_prefix,
            "deployments": {d: {"status": s.status, "message": s.message,
                                "replica_states": dict(s.replica_states)}
                            for d, s in app.deployments.items()}}
    return yaml.safe_dump({"applications": apps}, sort_keys=False)
