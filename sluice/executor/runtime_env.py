"""Runtime environments: what a task's or actor's worker process starts with.

``runtime_env={"env_vars": {...}, "working_dir": DIR, "py_modules": [...],
"excludes": [...]}`` (Ray's keys) on ``@remote``, ``.options()`` or
``sluice.init()`` (the job's default: a task's ``env_vars`` are merged over the
job's, its other keys replace the job's). :class:`RuntimeEnvs` turns one into a
:class:`PreparedEnv` when a task is submitted:

- ``working_dir`` and each ``py_modules`` entry (a directory, or a ``.py`` file)
  are packed once per runtime: their files, less those ``excludes`` names
  (gitignore-style patterns, see :func:`excluded`), are hashed, zipped into the
  node's cache folder (:func:`cache_root`) as ``pkg-HASH.zip`` and unpacked
  next to it as ``pkg-HASH/``, once per content hash. At most
  :data:`MAX_PACKAGE_BYTES` of files a package (Ray's limit too).
- The worker starts in the unpacked ``working_dir`` (its current directory and
  the first entry of ``sys.path``), with the ``py_modules`` folders next on
  ``sys.path`` (``SLUICE_ENV_PATH``, read by the worker) and ``env_vars`` set.

On a cluster, the driver's :class:`Shipper` puts each package's zip in the object
store instead, and the first worker on a node that needs it unpacks it into that
node's cache (:func:`fetch_packages`). ``pip`` is set up on the node that runs the
task (:func:`setup_on_node`): its virtualenv is built there once per requirements
(:func:`build_venv`, under the node's lock) and the worker activates it
(:func:`activate_venv`; such a worker starts as a fresh interpreter, so that a module
sluice preloads, numpy, comes from the virtualenv too). Requirement strings are
resolved by each node's pip, as in Ray; one that names an existing file or folder on the driver (a wheel, a project)
travels through the object store as a package, like a ``working_dir``, and one that
starts with ``${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}`` names a file of the working_dir
(:func:`with_working_dir`), on the local runtime too.

Children inherit: a worker's runtime_env (``SLUICE_RUNTIME_ENV``) is merged under
that of each task and actor it starts, as in Ray.

Workers are pooled per environment: a :class:`PreparedEnv`'s ``env_id`` (a hash
of all of the above) is part of a worker's identity and of a task's ready lane,
so a task runs only on a worker started with its environment, and tasks without
one never pay for any of this.

A bad environment (not a dict, an unknown key, a missing directory, a package past
the limit, a ``pip`` requirement that does not install) raises
:class:`~sluice.exceptions.RuntimeEnvSetupError` naming the cause; the runtime
fails the task (or actor) with it, so it surfaces at ``get``.

What touches files (packing, the node's cache, fetching packages, virtualenvs) is in
:mod:`sluice.executor.env_files`; this module checks, merges and prepares environments.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from sluice.exceptions import RuntimeEnvSetupError
from sluice.executor.env_files import (
    MAX_PACKAGE_BYTES,
    PACKAGES_KEY,
    SHIPPED_PREFIX,
    build_venv,
    looks_like_path,
    pack,
    unpacked,
    with_working_dir,
)

SUPPORTED = ("env_vars", "working_dir", "py_modules", "excludes", "pip")
"""The runtime_env keys sluice applies."""
DRIVER_FILE_KEYS = ("working_dir", "py_modules", "excludes")
"""The keys that name folders of the driver's machine (a cluster takes them from its driver only)."""
ENV_PATH_VAR = "SLUICE_ENV_PATH"
"""The worker's environment variable naming the folders its runtime_env puts first on sys.path."""
PACKAGE_KINDS = ("working_dir", "py_modules", "pip")
RUNTIME_ENV_VAR = "SLUICE_RUNTIME_ENV"
"""The worker's environment variable holding its runtime_env (JSON), which its children inherit."""


class PreparedEnv:
    """A runtime environment ready for workers: what they start with, and its identity."""

    __slots__ = ("env_id", "env_vars", "cwd", "paths", "python", "spec")

    def __init__(self, env_vars: dict[str, str], cwd: str | None, paths: tuple[str, ...],
                 python: str | None = None, spec: str | None = None):
        self.env_vars = env_vars
        self.cwd = cwd          # the unpacked working_dir (None: the driver's directory)
        self.paths = paths      # first on the worker's sys.path, in order
        self.python = python    # the interpreter of its pip virtualenv (None: the driver's)
        self.spec = spec        # the runtime_env it was made from (JSON), for children to inherit
        digest = hashlib.sha256(json.dumps([sorted(env_vars.items()), cwd, paths, python,
                                            spec if spec and PACKAGES_KEY in spec else None]).encode())
        self.env_id = digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"PreparedEnv({self.env_id}, env_vars={sorted(self.env_vars)}, cwd={self.cwd!r})"

    def overrides(self) -> dict[str, str]:
        """The variables a worker of this environment starts with, over the driver's."""
        out = dict(self.env_vars)
        if self.paths:
            out[ENV_PATH_VAR] = os.pathsep.join(self.paths)
        if self.spec:
            out[RUNTIME_ENV_VAR] = self.spec
        return out


def check_spec(spec: Any) -> dict[str, Any]:
    """``spec`` as a plain dict, or :class:`RuntimeEnvSetupError` naming what is wrong with it.

    >>> check_spec({"env_vars": {"A": "1"}})
    {'env_vars': {'A': '1'}}
    >>> check_spec({"conda": "x"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sluice.exceptions.RuntimeEnvSetupError: runtime_env has key(s) 'conda' that sluice does not support; ...
    """
    if not isinstance(spec, Mapping):
        raise RuntimeEnvSetupError(f"runtime_env={spec!r} must be a dict such as "
                                   "{'env_vars': {'NAME': 'value'}, 'working_dir': 'path'}")
    spec = dict(spec)
    if spec.get("pip") is not None:
        spec["pip"] = pip_requirements(spec["pip"])
    packages = spec.get(PACKAGES_KEY)
    if packages is not None and not (isinstance(packages, list) and all(
            isinstance(p, list) and len(p) == 3 and p[0] in PACKAGE_KINDS
            for p in packages)):
        raise RuntimeEnvSetupError(f"runtime_env {PACKAGES_KEY}={packages!r}: sluice's own key "
                                   "(shipped packages); do not set it")
    unknown = sorted(set(spec) - set(SUPPORTED) - {PACKAGES_KEY})
    if unknown:
        raise RuntimeEnvSetupError(
            f"runtime_env has key(s) {', '.join(repr(k) for k in unknown)} that sluice does not "
            f"support; use {', '.join(SUPPORTED)}")
    env_vars = spec.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()):
            raise RuntimeEnvSetupError(f"runtime_env env_vars={env_vars!r} must be a dict of str "
                                       "to str (write numbers as strings: {'N': '4'})")
        spec["env_vars"] = dict(env_vars)
    for key in ("py_modules", "excludes"):
        value = spec.get(key)
        if value is not None and (isinstance(value, str) or not all(isinstance(v, str) for v in value)):
            raise RuntimeEnvSetupError(f"runtime_env {key}={value!r} must be a list of str")
        if value is not None:
            spec[key] = list(value)
    working_dir = spec.get("working_dir")
    if working_dir is not None and not isinstance(working_dir, (str, os.PathLike)):
        raise RuntimeEnvSetupError(f"runtime_env working_dir={working_dir!r} must be a path")
    return spec


def pip_requirements(value: Any) -> list[str]:
    """The requirement strings of a ``pip`` value: a list of them, or Ray's
    ``{"packages": [...]}`` (with ``pip_check``, which is ignored; no other keys).

    >>> pip_requirements({"packages": ["numpy"]}), pip_requirements([])
    (['numpy'], [])
    """
    if isinstance(value, Mapping):
        other = sorted(set(value) - {"packages", "pip_check"})
        if other:
            raise RuntimeEnvSetupError(f"runtime_env pip={value!r}: only 'packages' is supported "
                                       f"(not {', '.join(repr(k) for k in other)})")
        value = value.get("packages", [])
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, str) and v.strip() for v in value):
        raise RuntimeEnvSetupError(f"runtime_env pip={value!r} must be a list of requirement "
                                   "strings, such as ['requests==2.31', './my_pkg.whl']")
    return list(value)


def merge(job: dict[str, Any] | None, task: Any) -> Any:
    """The task's environment over the job's: ``env_vars`` merged key by key (the task's win),
    every other key the task's if it gives one (as Ray does).

    >>> merge({"env_vars": {"A": "1", "B": "1"}, "working_dir": "/j"}, {"env_vars": {"B": "2"}})
    {'env_vars': {'A': '1', 'B': '2'}, 'working_dir': '/j'}
    """
    if not job:
        return dict(task or {})
    if task is not None and not isinstance(task, Mapping):
        return task  # not a dict: check_spec names it
    out = {**job, **(task or {})}
    if job.get("env_vars") and task and task.get("env_vars") is not None:
        out["env_vars"] = {**job["env_vars"], **task["env_vars"]}
    return out


class RuntimeEnvs:
    """Turns runtime_env dicts into :class:`PreparedEnv`, once per distinct dict.

    ``job``: the job's default (``init(runtime_env=)``), already checked.
    ``files``: whether this runtime packs ``working_dir``/``py_modules`` itself and builds
    ``pip`` virtualenvs (one node, whose workers share its cache folder); a cluster head
    takes folders only as packages its driver shipped (:class:`Shipper`, :data:`PACKAGES_KEY`)
    and leaves ``pip`` to the node that runs the task (:func:`setup_on_node`).
    """

    def __init__(self, job: dict[str, Any] | None = None, files: bool = True):
        self.job = check_spec(job) if job is not None else None
        self.files = files
        self.lock = threading.Lock()
        self.prepared: dict[str, PreparedEnv | None] = {}

    def resolve(self, spec: Any) -> PreparedEnv | None:
        """The environment of a task given ``runtime_env=spec`` (None: none given), the job's
        merged under it; None when there is none at all. Raises :class:`RuntimeEnvSetupError`."""
        if spec is None and self.job is None:
            return None
        try:
            key = json.dumps([spec, self.job], sort_keys=True, default=str)
        except (TypeError, ValueError) as err:
            raise RuntimeEnvSetupError(f"runtime_env={spec!r} is not plain data ({err})") from None
        with self.lock:
            if key in self.prepared:
                return self.prepared[key]
        env = self.prepare(merge(self.job, check_spec(spec) if spec is not None else None))
        with self.lock:
            self.prepared[key] = env
        return env

    def for_options(self, options: Mapping[str, Any]
                    ) -> tuple[PreparedEnv | None, RuntimeEnvSetupError | None]:
        """The environment of a task or actor of ``options`` (its ``runtime_env`` over the
        job's), or the error to fail it with; (None, None) for none (the fast path)."""
        spec = options.get("runtime_env")
        if spec is None and self.job is None:
            return None, None
        try:
            return self.resolve(spec), None
        except RuntimeEnvSetupError as err:
            return None, err
        except OSError as err:  # a folder that cannot be read, a full disk
            return None, RuntimeEnvSetupError(f"runtime_env={spec!r}: cannot pack it ({err})")

    def for_nodes(self, spec: dict[str, Any]) -> PreparedEnv:
        """A cluster head's environment of checked ``spec``: its env_vars, and the rest for
        the node to set up (``pip``, shipped packages), marked with :data:`PACKAGES_KEY`."""
        named = [k for k in DRIVER_FILE_KEYS if spec.get(k)]
        if named:
            raise RuntimeEnvSetupError(
                f"runtime_env {', '.join(named)}: a sluice cluster ships working_dir and "
                "py_modules given by its driver (sluice.init(address=...)), not by a task; use "
                "env_vars or pip there, or give the folders to the driver's init(runtime_env=)")
        if spec.get("pip") and PACKAGES_KEY not in spec:
            spec = {**spec, PACKAGES_KEY: []}
        return PreparedEnv(dict(spec.get("env_vars") or {}), None, (), None,
                           json.dumps(spec, sort_keys=True, default=str))

    def prepare(self, spec: dict[str, Any]) -> PreparedEnv | None:
        """Pack and unpack the packages of checked ``spec``; None when it asks for nothing."""
        if not any(spec.get(k) for k in ("env_vars", "working_dir", "py_modules", "pip", PACKAGES_KEY)):
            return None
        if not self.files:
            return self.for_nodes(spec)
        excludes = spec.get("excludes") or []
        cwd = None
        paths: list[str] = []
        if spec.get("working_dir"):
            src = os.path.abspath(os.fspath(spec["working_dir"]))
            if not os.path.isdir(src):
                raise RuntimeEnvSetupError(f"runtime_env working_dir={spec['working_dir']!r}: "
                                           f"{src} is not a directory; give an existing folder")
            cwd = unpacked(pack(src, excludes, "working_dir", root_name=None))
            paths.append(cwd)
        for entry in spec.get("py_modules") or []:
            src = os.path.abspath(entry)
            if not (os.path.isdir(src) or (os.path.isfile(src) and src.endswith(".py"))):
                raise RuntimeEnvSetupError(
                    f"runtime_env py_modules entry {entry!r}: {src} is neither a directory (a "
                    "package) nor a .py file; give an existing one")
            paths.append(unpacked(pack(src, excludes, "py_modules", root_name=os.path.basename(src))))
        python = None
        if spec.get("pip"):
            python, site_packages = build_venv(with_working_dir(spec["pip"], cwd))
            paths.append(site_packages)  # before the driver's own site-packages
        return PreparedEnv(dict(spec.get("env_vars") or {}), cwd, tuple(paths), python,
                           json.dumps(spec, sort_keys=True, default=str))


class Shipper:
    """A cluster driver's side: replaces the ``working_dir`` and ``py_modules`` of a
    runtime_env, and each ``pip`` requirement that is an existing file or folder here,
    by zips put in the object store (:data:`PACKAGES_KEY`, :data:`SHIPPED_PREFIX`), once
    per distinct runtime_env; keeps their refs alive while it lives. ``put`` stores a value."""

    def __init__(self, put: Any):
        self.put = put
        self.lock = threading.Lock()
        self.shipped: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, Any] = {}  # package hash -> ObjectRef of its zip

    def ship(self, spec: Any) -> Any:
        """``spec`` with its folders and modules shipped (unchanged when it has none)."""
        if not isinstance(spec, Mapping) or not any(spec.get(k) for k in PACKAGE_KINDS):
            return spec
        key = json.dumps(spec, sort_keys=True, default=str)
        with self.lock:
            if key in self.shipped:
                return self.shipped[key]
        spec = check_spec(spec)
        excludes = spec.pop("excludes", None) or []
        packages = []
        if spec.get("working_dir"):
            src = os.path.abspath(os.fspath(spec.pop("working_dir")))
            if not os.path.isdir(src):
                raise RuntimeEnvSetupError(f"runtime_env working_dir={src!r} is not a directory; "
                                           "give an existing folder")
            packages.append(["working_dir", *self.upload(pack(src, excludes, "working_dir", None))])
        for entry in spec.pop("py_modules", None) or []:
            src = os.path.abspath(entry)
            if not (os.path.isdir(src) or (os.path.isfile(src) and src.endswith(".py"))):
                raise RuntimeEnvSetupError(
                    f"runtime_env py_modules entry {entry!r}: {src} is neither a directory (a "
                    "package) nor a .py file; give an existing one")
            packages.append(["py_modules", *self.upload(pack(src, excludes, "py_modules",
                                                                os.path.basename(src)))])
        if spec.get("pip"):
            spec["pip"] = [self.ship_requirement(req, packages) for req in spec["pip"]]
        spec[PACKAGES_KEY] = packages
        with self.lock:
            self.shipped[key] = spec
        return spec

    def ship_requirement(self, req: str, packages: list) -> str:
        """A ``pip`` requirement as the nodes take it: one naming a file or folder here is
        shipped (appended to ``packages``) and named :data:`SHIPPED_PREFIX` ``HASH/NAME``;
        a file past :data:`MAX_PACKAGE_BYTES` is named by its absolute path (each node's pip
        reads it there, as in Ray); any other is left as it is."""
        src = os.path.abspath(req)
        if not (looks_like_path(req) and os.path.exists(src)):
            return req
        if os.path.isfile(src) and os.path.getsize(src) > MAX_PACKAGE_BYTES:
            return src
        name = os.path.basename(src.rstrip(os.sep))
        digest, oid = self.upload(pack(src, [], "pip", root_name=name))
        packages.append(["pip", digest, oid])
        return f"{SHIPPED_PREFIX}{digest}/{name}"

    def upload(self, zip_path: str) -> tuple[str, int]:
        digest = os.path.basename(zip_path)[len("pkg-"):-len(".zip")]
        with self.lock:
            ref = self.refs.get(digest)
        if ref is None:
            with open(zip_path, "rb") as f:
                ref = self.put(f.read())
            with self.lock:
                self.refs[digest] = ref
        return digest, ref.id


def builds_venv_on_node(environ: Mapping[str, str]) -> bool:
    """Whether a worker of variables ``environ`` builds a pip virtualenv on its cluster node
    before its first task: such a worker starts as a fresh interpreter that imports nothing
    the virtualenv may replace (no numpy preloaded) until it is active.

    >>> builds_venv_on_node({RUNTIME_ENV_VAR: '{"pip": ["x"], "_packages": []}'}), builds_venv_on_node({})
    (True, False)
    """
    text = environ.get(RUNTIME_ENV_VAR)
    if not text or '"pip"' not in text:
        return False
    spec = json.loads(text)
    return PACKAGES_KEY in spec and bool(spec.get("pip"))


