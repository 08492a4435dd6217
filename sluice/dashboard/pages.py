"""The dashboard's pages: a registry any library adds to, and the core's pages.

A page is a path, a title and ``render(view) -> html`` over a :class:`View` (the state
source, the query string, the rest of the path). :func:`register_page` adds one: the
core's pages below use it as a library's do (sluice.data, sluice.workflow, ...), so a
library's page appears once that library is imported, without a change here. Nothing
here imports the web server: a library may register a page at import time for free.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.dashboard.html import cards, filter_form, size, table


class Source(Protocol):
    """Where the pages read the runtime's state."""

    def rows(self, kind: str) -> list[dict[str, Any]]:
        """Every row of state table ``kind`` (see :mod:`sluice.executor.state`)."""
        ...

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        """The workers' log files, or the lines of one (see ``Backend.worker_logs``)."""
        ...


@dataclass
class View:
    """One request as a page sees it: the state ``source``, the ``query`` string's values
    and the ``rest`` of the path after the page's own (``/tasks/00ab``: ``"00ab"``)."""

    source: Source
    query: dict[str, str] = field(default_factory=dict)
    rest: str = ""


@dataclass(frozen=True)
class Page:
    """A page: served at ``path`` (and below it), titled ``title``, in the navigation
    bar when ``nav``, ordered there by ``order``."""

    path: str
    title: str
    render: Callable[[View], str]
    nav: bool = True
    order: int = 100


class Recent:
    """The newest ``keep`` things a library's page shows (its runs, experiments...), noted
    from any thread as they start and read, newest first, when the page renders."""

    def __init__(self, keep: int):
        self._items: deque[Any] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def note(self, item: Any) -> None:
        """Keep ``item`` (the oldest kept goes once ``keep`` are)."""
        with self._lock:
            self._items.append(item)

    def newest_first(self) -> list[Any]:
        """What is kept, newest first."""
        with self._lock:
            return list(reversed(self._items))


PAGES: dict[str, Page] = {}
"""Path -> page, every page registered so far."""


def register_page(path: str, title: str, render: Callable[[View], str], *, nav: bool = True,
                  order: int = 100) -> Page:
    """Serve ``render`` at ``path`` (a later registration of the same path replaces it)."""
    if not path.startswith("/") or (path != "/" and path.endswith("/")):
        raise ValueError(f"page path {path!r}: give an absolute path without a trailing "
                         f"slash, like '/workflows'")
    page = Page(path, title, render, nav, order)
    PAGES[path] = page
    return page


def find(path: str) -> tuple[Page, str] | None:
    """The page serving ``path`` and the rest of the path below it, or None."""
    if path in PAGES:
        return PAGES[path], ""
    best = None
    for page_path, page in PAGES.items():
        if page_path != "/" and path.startswith(page_path + "/"):
            if best is None or len(page_path) > len(best[0].path):
                best = (page, path[len(page_path) + 1:])
    return best


def navigation() -> list[tuple[str, str]]:
    """(path, title) of the pages in the navigation bar, in order."""
    pages = sorted((p for p in PAGES.values() if p.nav), key=lambda p: (p.order, p.path))
    return [(p.path, p.title) for p in pages]


# -- the core's pages ---------------------------------------------------------------------

TASK_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
               "RUNNING", "FINISHED", "FAILED")
PAGE_ROWS = 500


def overview(view: View) -> str:
    """The cluster: nodes with their resources and stores, and what runs on them (the
    task and object figures from the runtime's metrics: no row per task is read)."""
    nodes = view.source.rows("nodes")
    actors = view.source.rows("actors")
    workers = view.source.rows("workers")
    counts: dict[str, int] = {}
    objects = stored = 0
    for m in view.source.rows("metrics"):
        name, value = m["name"], m["value"]
        if name == "sluice_tasks":
            counts[m["labels"]["state"]] = int(value)
        elif name == "sluice_tasks_finished_total":
            counts["FINISHED"] = int(value)
        elif name == "sluice_tasks_failed_total":
            counts["FAILED"] = int(value)
        elif name == "sluice_objects":
            objects = int(value)
        elif name == "sluice_object_store_used_bytes":
            stored += int(value)
    counts = {state: n for state, n in counts.items() if n}
    capacity = sum(n.get("store_capacity") or 0 for n in nodes if n["state"] == "ALIVE")
    used = stored / capacity if capacity else 0.0
    figures = [("nodes alive", sum(n["state"] == "ALIVE" for n in nodes)),
               ("workers", sum(w["is_alive"] for w in workers)),
               ("actors alive", sum(a["state"] == "ALIVE" for a in actors)),
               ("tasks running", counts.get("RUNNING", 0)),
               ("tasks finished", counts.get("FINISHED", 0)),
               ("tasks failed", counts.get("FAILED", 0)),
               ("objects", objects),
               ("shared memory", f"{size(stored)} of {size(capacity)}")]
    node_rows = [{**n, "resources": n["resources_total"], "store": size(n.get("store_capacity")),
                  "in memory": size(n.get("store_used")), "spilled": n.get("objects_spilled"),
                  "pulled": f"{n.get('objects_pulled') or 0} ({size(n.get('bytes_pulled'))})"}
                 for n in nodes]
    return ("<h1>Cluster</h1>" + cards(figures)
            + f"<div class=muted>store use <span class=bar><span style='width:{used:.0%}'>"
              f"</span></span> {used:.1%}</div>"
            + "<h2>Nodes</h2>" + table(node_rows, ["node_id", "node_ip", "state",
                                                   "is_head_node", "resources", "store",
                                                   "in memory", "spilled", "pulled"])
            + "<h2>Tasks by state</h2>"
            + table([{"state": s, "tasks": n} for s, n in sorted(counts.items())],
                    ["state", "tasks"], empty="no tasks yet"))


def tasks_page(view: View) -> str:
    """Tasks, newest first, filterable by state, name, node and job; a task's own page
    shows its error with the remote traceback."""
    from sluice.executor.state import RECENT_TASKS

    rows = view.source.rows("recent_tasks")
    if view.rest:
        if not any(r["task_id"] == view.rest for r in rows):  # an older one: all kept
            rows = view.source.rows("tasks")
        return task_detail(rows, view.rest)
    wanted = {k: view.query.get(k, "") for k in ("state", "name", "node_id", "job_id")}
    kept = [r for r in rows if all(not v or str(r.get(k)) == v for k, v in wanted.items())]
    kept.reverse()
    names = sorted({r["name"] for r in rows})
    shown = kept[:PAGE_ROWS]
    return ("<h1>Tasks</h1><p class=muted><a href='/api/v0/timeline'>download the "
            "timeline</a> (a Chrome trace: open it in chrome://tracing or "
            "ui.perfetto.dev)</p>"
            + filter_form(wanted, {"state": TASK_STATES, "name": names})
            + f"<p class=muted>{len(kept)} of {len(rows)} task(s)"
              f"{f'; the newest {PAGE_ROWS} shown' if len(kept) > PAGE_ROWS else ''} "
              f"(of the ended tasks, the newest {RECENT_TASKS:,} are searched here; "
              f"<code>sluice list tasks</code> searches every one kept)</p>"
            + table(shown, ["task_id", "name", "state", "type", "node_id", "worker_pid",
                            "duration_s", "error_type", "job_id"], link=("task_id", "/tasks/"),
                    empty="no task matches"))


def task_detail(rows: list[dict[str, Any]], task_id: str) -> str:
    """One task: every column, and its error's remote traceback."""
    found = [r for r in rows if r["task_id"] == task_id]
    if not found:
        return (f"<h1>Task {task_id}</h1><p>No task {task_id} is known: it never existed, "
                f"or it ended long enough ago to have left the record of ended tasks.</p>")
    row = found[-1]
    from html import escape

    fields = table([{"column": k, "value": v} for k, v in row.items() if k != "error_message"],
                   ["column", "value"])
    error = (f"<h2>Error</h2><pre class=traceback>{escape(row['error_message'])}</pre>"
             if row.get("error_message") else "")
    return f"<h1>Task {escape(task_id)} ({escape(row['name'])})</h1>{fields}{error}"


def actors_page(view: View) -> str:
    """Actors: class, state, where they run, restarts, why they died."""
    rows = list(reversed(view.source.rows("actors")))
    state = view.query.get("state", "")
    kept = [r for r in rows if not state or r["state"] == state]
    return ("<h1>Actors</h1>" + filter_form({"state": state}, {"state": (
                "DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")})
            + table(kept[:PAGE_ROWS], ["actor_id", "class_name", "name", "state", "node_id",
                                       "pid", "num_restarts", "required_resources",
                                       "death_cause"], empty="no actors"))


def objects_page(view: View) -> str:
    """Objects the runtime tracks: size, where the value lives, who holds it."""
    rows = list(reversed(view.source.rows("objects")))
    shown = [{**r, "size": size(r["object_size"]),
              "where": "shared memory" if r.get("in_shared_memory") else "inline"}
             for r in rows[:PAGE_ROWS]]
    total = sum(r["object_size"] or 0 for r in rows)
    return (f"<h1>Objects</h1><p class=muted>{len(rows)} object(s), {size(total)}</p>"
            + table(shown, ["object_id", "size", "where", "task_status", "reference_type",
                            "refs", "holds"], empty="no objects"))


def workers_page(view: View) -> str:
    """Worker processes: their pids, nodes, actors and what they are running."""
    return "<h1>Workers</h1>" + table(view.source.rows("workers"), [
        "worker_id", "pid", "node_id", "is_alive", "actor_class", "tasks_in_flight",
        "blocked_in_get"], empty="no workers")


def jobs_page(view: View) -> str:
    """Jobs: the drivers connected now and the jobs submitted to the cluster."""
    return "<h1>Jobs</h1>" + table(view.source.rows("jobs"), [
        "job_id", "type", "status", "namespace", "driver_pid", "entrypoint", "submission_id",
        "message"], empty="no jobs")


def logs_page(view: View) -> str:
    """The workers' log files; one file's last lines below it (``/logs/FILE``)."""
    from html import escape

    if view.rest:
        try:
            lines = view.source.worker_logs(view.rest, int(view.query.get("lines", 1000)))
        except ValueError as err:
            return f"<h1>Log</h1><p class=state-FAILED>{escape(str(err))}</p>"
        return (f"<h1>{escape(view.rest)}</h1><p class=muted>the last {len(lines)} line(s)</p>"
                f"<pre class=log>{escape(chr(10).join(lines))}</pre>")
    files = view.source.worker_logs()
    workers = {w["pid"]: w for w in view.source.rows("workers")}
    rows = [{**f, "size": size(f["size"]), "actor": (workers.get(f["pid"]) or {}).get(
        "actor_class"), "alive": (workers.get(f["pid"]) or {}).get("is_alive", False)}
        for f in files]
    return ("<h1>Logs</h1><p class=muted>Each worker's stdout (.out) and stderr (.err); "
            "they stay after the run (`sluice logs`).</p>"
            + table(rows, ["filename", "pid", "worker_index", "stream", "size", "actor",
                           "alive"], link=("filename", "/logs/"), empty="no worker logs"))


register_page("/", "Cluster", overview, order=0)
register_page("/jobs", "Jobs", jobs_page, order=10)
register_page("/tasks", "Tasks", tasks_page, order=20)
register_page("/actors", "Actors", actors_page, order=30)
register_page("/objects", "Objects", objects_page, order=40)
register_page("/workers", "Workers", workers_page, order=50)
register_page("/logs", "Logs", logs_page, order=60)

