"""A node's side of runtime environments: packages and pip virtualenvs in its cache.

:mod:`sluice.executor.runtime_env` checks and prepares an environment; this module
holds what touches files: a ``working_dir`` or ``py_modules`` entry is packed
(:func:`pack`: files less ``excludes``, hashed and zipped once per content into the
node's cache, :func:`cache_root`) and unpacked next to its zip (:func:`unpacked`);
on a cluster a node's first worker that needs a package fetches it from the object
store (:func:`fetch_packages`). ``pip`` builds a virtualenv per requirements once per
node (:func:`build_venv`, under the node's lock) that workers activate
(:func:`activate_venv`); :func:`setup_on_node` does both for a worker on a cluster
node. A failure raises :class:`~sluice.exceptions.RuntimeEnvSetupError` naming the
cause.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from typing import Any

from sluice.exceptions import RuntimeEnvSetupError

PIP_TIMEOUT_S = 900.0
"""The longest one ``pip install`` of a runtime_env may take."""


PIP_TAIL_LINES = 15
"""How many of pip's last lines a failed install's error carries."""


MAX_PACKAGE_BYTES = 100 * 1024 * 1024
"""The most bytes of files (after ``excludes``) one ``working_dir`` or ``py_modules`` entry may hold."""


PACKAGES_KEY = "_packages"
"""The key under which a cluster driver sends a runtime_env's packed files: ``[[kind, hash,
object id], ...]`` (kind ``working_dir``, ``py_modules`` or ``pip``), the zips being in the
object store. Its presence (even empty) marks a runtime_env a cluster node sets up itself."""


WORKING_DIR_REF = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"
"""Written in a ``pip`` requirement, the folder the working_dir is unpacked in (Ray's name)."""


SHIPPED_PREFIX = "sluice-package:"
"""A shipped ``pip`` requirement: ``sluice-package:HASH/NAME``, the file or folder NAME of
package HASH in the node's cache (see :func:`node_requirements`)."""


CACHE_VAR = "SLUICE_RUNTIME_ENV_CACHE"
"""An environment variable naming the cache folder (of a node: set where it starts)."""


def cache_root() -> str:
    """This node's folder of packed and unpacked packages and virtualenvs (shared by every
    runtime of the user): ``$SLUICE_RUNTIME_ENV_CACHE``, else ``sluice-runtime-env-UID`` in
    the temporary folder."""
    return os.environ.get(CACHE_VAR) or os.path.join(tempfile.gettempdir(),
                                                     f"sluice-runtime-env-{os.getuid()}")


def excluded(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """Whether path ``rel`` (relative to the package root, ``/``-separated) matches one of
    the gitignore-style ``patterns``: a pattern with no ``/`` (but a trailing one) matches
    any file or folder of that name at any depth; one with a ``/`` matches from the root
    (``*`` within one level, ``**`` across levels); a trailing ``/`` matches folders only.
    (Negation with ``!`` is not supported.)

    >>> excluded("a/b/data.csv", False, ["*.csv"]), excluded("a/build", True, ["build/"])
    (True, True)
    >>> excluded("src/x.py", False, ["/x.py"]), excluded("x.py", False, ["/x.py"])
    (False, True)
    """
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if not pat or (dir_only and not is_dir):
            continue
        if "/" not in pat:
            if fnmatch.fnmatchcase(name, pat):
                return True
        elif _match_path(rel, pat.lstrip("/")):
            return True
    return False


def _match_path(rel: str, pat: str) -> bool:
    parts, pats = rel.split("/"), pat.split("/")

    def match(i: int, j: int) -> bool:
        if j == len(pats):
            return i == len(parts)
        if pats[j] == "**":
            return any(match(k, j + 1) for k in range(i, len(parts) + 1))
        return i < len(parts) and fnmatch.fnmatchcase(parts[i], pats[j]) and match(i + 1, j + 1)

    return match(0, 0)


def pack(src: str, excludes: list[str], key: str, root_name: str | None) -> str:
    """Hash and zip ``src`` (a folder, or one .py file) into the cache; the zip's path.

    ``root_name``: the folder (or file) name the contents get inside the package (a
    ``py_modules`` entry keeps its name); None puts a folder's contents at the root.
    """
    files: list[tuple[str, str]] = []  # (path in the package, path on disk)
    if os.path.isfile(src):
        files.append((os.path.basename(src), src))
    else:
        for dirpath, dirnames, filenames in os.walk(src):
            rel_dir = os.path.relpath(dirpath, src).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(d for d in dirnames if not excluded(rel_dir + d, True, excludes))
            for f in sorted(filenames):
                if not excluded(rel_dir + f, False, excludes):
                    arc = rel_dir + f
                    files.append((f"{root_name}/{arc}" if root_name else arc, os.path.join(dirpath, f)))
    digest = hashlib.sha256()
    total = 0
    for arc, path in files:
        try:
            size = os.path.getsize(path)
        except OSError:
            continue  # a dangling link or a file removed meanwhile
        total += size
        if total > MAX_PACKAGE_BYTES:
            remedy = ("build it into a wheel (a wheel past the limit is not shipped: each "
                      "node's pip reads it at its path, as in Ray)" if key == "pip" else
                      "leave large files out with runtime_env excludes=[...] (gitignore-style "
                      "patterns) or load them from shared storage in the task")
            raise RuntimeEnvSetupError(
                f"runtime_env {key} {src}: more than {MAX_PACKAGE_BYTES >> 20} MiB of files "
                f"(reached at {arc}); {remedy}")
        digest.update(arc.encode() + b"\0")
        with open(path, "rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    zip_path = os.path.join(root, f"pkg-{digest.hexdigest()[:24]}.zip")
    if not os.path.exists(zip_path):
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".zip.tmp")
        os.close(fd)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for arc, path in files:
                if os.path.exists(path):
                    z.write(path, arc)
        os.replace(tmp, zip_path)
    return zip_path


def unpacked(zip_path: str) -> str:
    """The folder ``zip_path`` is unpacked into (next to it, named after it), unpacked once."""
    target = zip_path[: -len(".zip")]
    if not os.path.isdir(target):
        tmp = tempfile.mkdtemp(dir=os.path.dirname(zip_path), prefix=".unpack-")
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another runtime unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_venv(requirements: list[str]) -> tuple[str, str]:
    """The virtualenv of ``requirements`` on this node, built once: its python and its
    site-packages folder.

    ``python -m venv --system-site-packages`` plus a ``.pth`` file that adds the
    driver's own site-packages after the venv's, so the venv sees every package the
    driver has (sluice too) and pip installs only what is missing or of another version,
    from the index and wheel folders pip is configured with. Keyed by the requirements,
    the content of those that are local files, and the interpreter; built under a file
    lock (one builder per node), marked ready when pip succeeded. A failed install
    raises :class:`RuntimeEnvSetupError` with pip's last lines and leaves nothing behind.
    """
    import fcntl
    import site
    import subprocess
    import sys

    digest = hashlib.sha256(json.dumps([requirements, sys.executable, sys.version]).encode())
    for req in requirements:
        if os.path.isfile(req):
            with open(req, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    venv = os.path.join(root, f"venv-{digest.hexdigest()[:24]}")
    python = os.path.join(venv, "bin", "python")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = os.path.join(venv, "lib", version, "site-packages")
    ready = os.path.join(venv, ".sluice-ready")
    if os.path.exists(ready):
        return python, site_packages
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(ready):  # another runtime built it meanwhile
            return python, site_packages
        shutil.rmtree(venv, ignore_errors=True)
        try:
            made = subprocess.run([sys.executable, "-m", "venv", "--without-pip",
                                   "--system-site-packages", venv],
                                  capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
            if made.returncode != 0:
                raise RuntimeEnvSetupError(f"runtime_env pip={requirements!r}: cannot make a "
                                           f"virtualenv in {venv}: {tail(made.stdout + made.stderr)}")
            parents = list(site.getsitepackages())
            if site.ENABLE_USER_SITE:
                parents.append(site.getusersitepackages())
            with open(os.path.join(site_packages, "_sluice_driver_site.pth"), "w") as f:
                f.write("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents
                                                    if os.path.isdir(p)) + "\n")
            try:
                pip = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check",
                                      *requirements], capture_output=True, text=True,
                                     timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise RuntimeEnvSetupError(f"runtime_env pip={requirements!r}: pip install took more "
                                           f"than {PIP_TIMEOUT_S:g} s") from None
            if pip.returncode != 0:
                raise RuntimeEnvSetupError(
                    f"runtime_env pip={requirements!r}: pip install failed (exit code "
                    f"{pip.returncode}); fix the requirement or make it installable from this "
                    f"machine's package index or wheel folders. pip said:\n"
                    f"{tail(pip.stdout + pip.stderr)}")
            open(ready, "w").close()
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    return python, site_packages


def tail(text: str) -> str:
    """The last :data:`PIP_TAIL_LINES` non-empty lines of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-PIP_TAIL_LINES:])


def fetch_packages(packages: list, get: Any) -> tuple[str | None, list[str]]:
    """In a worker on a cluster node: unpack the shipped packages into this node's cache
    (once per node: ``get(object_id)`` reads a zip from the object store only when its
    folder is not there yet); returns the working_dir folder (or None) and the folders to
    put first on sys.path, in order (not those of ``pip`` packages, which pip installs)."""
    root = cache_root()
    os.makedirs(root, exist_ok=True)
    cwd, paths = None, []
    for kind, digest, oid in packages:
        target = os.path.join(root, f"pkg-{digest}")
        if not os.path.isdir(target):
            fd, tmp = tempfile.mkstemp(dir=root, suffix=".zip.tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(get(oid))
            zip_path = target + ".zip"
            os.replace(tmp, zip_path)
            unpacked(zip_path)
        if kind == "working_dir":
            cwd = target
        if kind != "pip":
            paths.append(target)
    return cwd, paths


def looks_like_path(requirement: str) -> bool:
    """Whether pip reads ``requirement`` as a path (not a project name): it has a folder
    separator, starts with ``.``, or ends as an archive does.

    >>> looks_like_path("./pkg"), looks_like_path("x-1.0-py3-none-any.whl"), looks_like_path("numpy")
    (True, True, False)
    """
    return os.sep in requirement or "/" in requirement or requirement.startswith(".") or \
        requirement.endswith((".whl", ".zip", ".tar.gz", ".tgz"))


def with_working_dir(requirements: list[str], cwd: str | None) -> list[str]:
    """``requirements`` with ``${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}`` (:data:`WORKING_DIR_REF`)
    made ``cwd``, the unpacked working_dir, as Ray does: a wheel or project inside the
    working_dir is named so on every node. Raises when there is no working_dir.

    >>> with_working_dir(["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}/x.whl", "numpy"], "/c/pkg-1")
    ['/c/pkg-1/x.whl', 'numpy']
    """
    if not any(WORKING_DIR_REF in req for req in requirements):
        return requirements
    if cwd is None:
        raise RuntimeEnvSetupError(f"runtime_env pip={requirements!r} names {WORKING_DIR_REF}, "
                                   "the working_dir, but the runtime_env has none; give "
                                   "working_dir=FOLDER holding those files")
    return [req.replace(WORKING_DIR_REF, cwd) for req in requirements]


def node_requirements(requirements: list[str]) -> list[str]:
    """``requirements`` with each shipped one (:data:`SHIPPED_PREFIX`) made the path of its
    file or folder in this node's cache, where :func:`fetch_packages` unpacked it.

    >>> node_requirements(["numpy"]), node_requirements(["sluice-package:ab12/x.whl"])[0][-14:]
    (['numpy'], 'pkg-ab12/x.whl')
    """
    out = []
    for req in requirements:
        if req.startswith(SHIPPED_PREFIX):
            digest, name = req[len(SHIPPED_PREFIX):].split("/", 1)
            req = os.path.join(cache_root(), f"pkg-{digest}", name)
        out.append(req)
    return out


def setup_on_node(spec: dict[str, Any], get: Any) -> tuple[str | None, list[str], str | None]:
    """In a worker on a cluster node, before its first task: unpack the shipped packages of
    ``spec`` (:func:`fetch_packages`) and build its ``pip`` virtualenv on this node, once
    per requirements (:func:`build_venv`). Returns the working_dir folder (or None), the
    folders to put first on sys.path, and the virtualenv's python (None without ``pip``)
    for :func:`activate_venv`. Raises :class:`RuntimeEnvSetupError` (with pip's words)."""
    cwd, paths = fetch_packages(spec.get(PACKAGES_KEY) or [], get)
    python = None
    if spec.get("pip"):
        python, _ = build_venv(with_working_dir(node_requirements(spec["pip"]), cwd))
    return cwd, paths, python


def activate_venv(python: str) -> None:
    """Make this running interpreter one of the virtualenv of ``python`` (built by
    :func:`build_venv`), as virtualenv's ``activate_this`` does: its site-packages (and the
    ``.pth`` files there) first on ``sys.path``, ``sys.prefix`` and ``sys.executable`` its
    own, ``VIRTUAL_ENV`` set and its ``bin`` first on ``PATH`` for subprocesses. A module
    imported before keeps the version it was imported with: the worker calling it started
    fresh (:func:`builds_venv_on_node`), so that is only sluice and its cloudpickle."""
    import importlib
    import site
    import sys

    venv = os.path.dirname(os.path.dirname(python))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    before = list(sys.path)
    site.addsitedir(os.path.join(venv, "lib", version, "site-packages"))
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before
    sys.prefix = sys.exec_prefix = venv
    sys.executable = python
    os.environ["VIRTUAL_ENV"] = venv
    os.environ["PATH"] = os.pathsep.join([os.path.join(venv, "bin"), os.environ.get("PATH", "")])
    importlib.invalidate_caches()
