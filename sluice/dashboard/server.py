"""The dashboard's HTTP server: starlette routes served by uvicorn on a thread.

Routes: every registered page (:mod:`sluice.dashboard.pages`), and Ray's JSON state API:
``GET /api/v0/{tasks,actors,objects,workers,nodes,jobs}?limit=&filter_keys=&
filter_predicates=&filter_values=`` and ``GET /api/v0/{tasks,actors,objects}/summarize``,
answered as Ray's dashboard answers them (``{"result": true, "msg": ..., "data":
{"result": ...}}``). With a ``token`` (a cluster's), a request must carry it: the
``Authorization: Bearer`` header, or a ``sluice_token`` cookie that ``/?token=...`` sets.
"""

from __future__ import annotations

import hmac
import socket
import sys
import threading
import time
from typing import Any

from sluice.dashboard import pages
from sluice.dashboard.html import layout

DEFAULT_PORT = 8265
"""Ray's dashboard port."""

START_DEADLINE_S = 30.0


class Dashboard:
    """One running dashboard over ``source`` (see :class:`~sluice.dashboard.pages.Source`),
    listening on ``host:port`` (port 0: any free one)."""

    def __init__(self, source: pages.Source, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, token: str | None = None, jobs: Any = None):
        self.source = source
        self.host = host
        self.port = port
        self.token = token
        self.jobs = jobs  # a cluster head's JobManager (jobs.py); None: no job submission
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where it is served, ``http://HOST:PORT``."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Listen and serve on a daemon thread; ``OSError`` naming the port when it is
        taken (or cannot be bound)."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as err:
            sock.close()
            raise OSError(f"the dashboard cannot listen on {self.host}:{self.port}: {err}; "
                          f"another process (another runtime's dashboard?) holds the port; "
                          f"give init(dashboard_port=...) another one, or 0 for any free "
                          f"port") from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(build_app(self), log_level="warning", lifespan="off",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       name="sluice-dashboard", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_DEADLINE_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the dashboard did not start on {self.host}:{self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.server = self.thread = None


def build_app(dashboard: Dashboard) -> Any:
    """The starlette application of ``dashboard``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route

    def allowed(request: Request) -> bool:
        token = dashboard.token
        if not token:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
            or request.cookies.get("sluice_token", "")
        return bool(given) and hmac.compare_digest(given, token)

    def refused() -> Response:
        return JSONResponse({"result": False, "msg": "this dashboard needs the cluster's token: "
                             "send 'Authorization: Bearer TOKEN', or open /?token=TOKEN once "
                             "in the browser"}, status_code=401)

    async def api_list(request: Request) -> Response:
        if not allowed(request):
            return refused()
        kind = request.path_params["kind"]
        try:
            from sluice.util.state import DEFAULT_LIMIT, select

            filters = list(zip(request.query_params.getlist("filter_keys"),
                               request.query_params.getlist("filter_predicates"),
                               request.query_params.getlist("filter_values"), strict=True))
            limit = int(request.query_params.get("limit", DEFAULT_LIMIT))
            rows = dashboard.source.rows(kind)
            chosen = select(kind, rows, filters, limit)
        except (ValueError, TypeError) as err:
            return JSONResponse({"result": False, "msg": str(err)}, status_code=400)
        except Exception as err:  # noqa: BLE001 - a bug: said, not a bare 500
            return JSONResponse({"result": False, "msg": f"the state of {kind} could not be "
                                 f"read: {type(err).__name__}: {err}"}, status_code=500)
        return JSONResponse({"result": True, "msg": "", "data": {"result": {
            "total": len(rows), "num_after_truncation": len(chosen),
            "num_filtered": len(chosen), "result": [dict(r) for r in chosen]}}})

    async def api_summary(request: Request) -> Response:
        if not allowed(request):
            return refused()
        kind = request.path_params["kind"]
        from sluice.util import state

        summarize = {"tasks": state.summarize_task_rows, "actors": state.summarize_actor_rows,
                     "objects": state.summarize_object_rows}.get(kind)
        if summarize is None:
            return JSONResponse({"result": False, "msg": f"{kind!r} has no summary; use "
                                 f"tasks, actors or objects"}, status_code=400)
        result = summarize(dashboard.source.rows(kind))
        return JSONResponse({"result": True, "msg": "", "data": {"result": {
            "node_id_to_summary": result}}})

    async def api_logs(request: Request) -> Response:
        if not allowed(request):
            return refused()
        try:
            return JSONResponse({"result": True, "msg": "", "data": {"result": {
                "files": dashboard.source.worker_logs()}}})
        except ValueError as err:
            return JSONResponse({"result": False, "msg": str(err)}, status_code=400)

    async def api_log_file(request: Request) -> Response:
        if not allowed(request):
            return refused()
        try:
            lines = dashboard.source.worker_logs(request.query_params.get("filename", ""),
                                                 int(request.query_params.get("lines", -1)))
        except ValueError as err:
            return JSONResponse({"result": False, "msg": str(err)}, status_code=400)
        return JSONResponse({"result": True, "msg": "", "data": {"result": lines}})

    async def api_timeline(request: Request) -> Response:
        if not allowed(request):
            return refused()
        from sluice.util.timeline import stage_names, trace_events

        events = trace_events(dashboard.source.rows("tasks"), stage_names())
        return JSONResponse(events, headers={
            "Content-Disposition": "attachment; filename=sluice-timeline.json"})

    async def metrics(request: Request) -> Response:
        if not allowed(request):
            return refused()
        from sluice.dashboard.metrics import render

        return Response(render(dashboard.source),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    def job_call(request: Request, call: Any) -> Response:
        """Answer a job request with ``call()``'s JSON; its bad input as 400 (404 for an
        unknown job)."""
        from sluice.dashboard.jobs import JobError

        if not allowed(request):
            return refused()
        if dashboard.jobs is None:
            return JSONResponse({"result": False, "msg": "this dashboard takes no jobs: submit "
                                 "them to a cluster head's (sluice start --head prints its "
                                 "address)"}, status_code=404)
        try:
            return JSONResponse(call())
        except JobError as err:
            return JSONResponse({"result": False, "msg": str(err)},
                                status_code=404 if str(err).startswith("no job") else 400)

    async def jobs_root(request: Request) -> Response:
        if request.method == "GET":
            return job_call(request, lambda: [j.to_dict() for j in dashboard.jobs.list()])
        try:
            spec = await request.json()
        except ValueError:
            return JSONResponse({"result": False, "msg": "send the job as JSON"},
                                status_code=400)
        if not isinstance(spec, dict):
            return JSONResponse({"result": False, "msg": "send the job as a JSON object"},
                                status_code=400)

        def submit() -> dict[str, Any]:
            job_id = dashboard.jobs.submit(spec.get("entrypoint"), spec.get("submission_id")
                                           or spec.get("job_id"), spec.get("runtime_env"),
                                           spec.get("metadata"))
            return {"submission_id": job_id, "job_id": job_id}

        return job_call(request, submit)

    async def job_one(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if request.method == "DELETE":
            return job_call(request, lambda: {"deleted": dashboard.jobs.delete(job_id)})
        return job_call(request, lambda: dashboard.jobs.get(job_id).to_dict())

    async def job_logs(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return job_call(request, lambda: {"logs": dashboard.jobs.logs(job_id)})

    async def job_stop(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return job_call(request, lambda: {"stopped": dashboard.jobs.stop(job_id)})

    async def package(request: Request) -> Response:
        data = await request.body()
        name = request.path_params["name"]
        return job_call(request, lambda: {"uri": dashboard.jobs.add_package(name, data)})

    async def page(request: Request) -> Response:
        if dashboard.token and "token" in request.query_params:
            response = RedirectResponse(request.url.path)
            response.set_cookie("sluice_token", request.query_params["token"], httponly=True,
                                samesite="strict")
            return response
        if not allowed(request):
            return HTMLResponse("<h1>401</h1><p>This dashboard needs the cluster's token: "
                                "open /?token=TOKEN once.</p>", status_code=401)
        path = "/" + request.path_params.get("path", "")
        found = pages.find(path.rstrip("/") or "/")
        if found is None:
            return HTMLResponse(layout("Not found", pages.navigation(), path,
                                       f"<h1>Not found</h1><p>No page at {path}.</p>"),
                                status_code=404)
        page_, rest = found
        view = pages.View(dashboard.source, dict(request.query_params), rest)
        try:
            body = page_.render(view)
        except Exception as err:  # noqa: BLE001 - a page's bug shows on the page
            body = (f"<h1>{page_.title}</h1><p class=state-FAILED>this page failed: "
                    f"{type(err).__name__}: {err}</p>")
        if request.headers.get("x-fragment") == "1":
            return HTMLResponse(body)
        return HTMLResponse(layout(page_.title, pages.navigation(), page_.path, body))

    return Starlette(routes=[
        Route("/api/jobs/", jobs_root, methods=["GET", "POST"]),
        Route("/api/jobs/{job_id}", job_one, methods=["GET", "DELETE"]),
        Route("/api/jobs/{job_id}/logs", job_logs),
        Route("/api/jobs/{job_id}/stop", job_stop, methods=["POST"]),
        Route("/api/packages/{name}", package, methods=["PUT"]),
        Route("/metrics", metrics),
        Route("/api/v0/timeline", api_timeline),
        Route("/api/v0/logs", api_logs),
        Route("/api/v0/logs/file", api_log_file),
        Route("/api/v0/{kind}/summarize", api_summary),
        Route("/api/v0/{kind}", api_list),
        Route("/{path:path}", page),
    ])


class BackendSource:
    """The state of a runtime's :class:`~sluice.executor.backend.Backend` (the embedded
    runtime's, or a cluster driver's, which asks its head)."""

    def __init__(self, backend: Any):
        self.backend = backend

    def rows(self, kind: str) -> list[dict[str, Any]]:
        return self.backend.state(kind)

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        return self.backend.worker_logs(filename, tail)


_current: Dashboard | None = None


def current() -> Dashboard | None:
    """The dashboard this process serves, if any."""
    return _current


def start(source: pages.Source, host: str = "127.0.0.1", port: int | None = None,
          token: str | None = None, quiet: bool = False, jobs: Any = None) -> Dashboard | None:
    """Start this process's dashboard and print where it is; None (with a message saying
    why) when it cannot listen, so that the runtime starts without it."""
    global _current
    from sluice.compiler import history

    stop()
    history.enable()  # the Plans page shows the runs from now on
    dashboard = Dashboard(source, host, DEFAULT_PORT if port is None else port, token, jobs)
    try:
        dashboard.start()
    except OSError as err:
        print(f"sluice: {err}; the runtime runs without a dashboard", file=sys.stderr)
        return None
    except ImportError as err:
        print(f"sluice: the dashboard needs starlette and uvicorn (pip install "
              f"'sluice[serve]'): {err}; the runtime runs without one", file=sys.stderr)
        return None
    _current = dashboard
    if not quiet:
        print(f"sluice: view the dashboard at {dashboard.url}", file=sys.stderr)
    return dashboard


def stop() -> None:
    """Stop this process's dashboard, if one runs."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None
