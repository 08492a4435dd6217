"""The state API over HTTP: rows read from a dashboard's ``/api/v0/`` (``address`` in
:mod:`sluice.util.state`, and ``sluice list``)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

ALL_ROWS = 10_000_000
"""The limit sent when every row is wanted (the caller filters and limits)."""


def dashboard_url(address: str) -> str:
    """``http://HOST:PORT`` of ``address`` (``HOST:PORT`` or a URL; a ``sluice://`` address
    is a cluster's head, whose dashboard listens on its ``--dashboard-port``)."""
    address = address.strip().rstrip("/")
    if address.startswith("sluice://"):
        raise ValueError(f"address={address!r} is a cluster's gRPC address; give its "
                         f"dashboard's, http://HEAD:8265 (sluice start --head prints it)")
    return address if "://" in address else f"http://{address}"


def token_for(url: str) -> str | None:
    """The cluster token to send to the dashboard at ``url``: ``SLUICE_TOKEN``, else the
    token file of the head on this machine that serves it (None: none needed)."""
    token = os.environ.get("SLUICE_TOKEN")
    if token:
        return token
    try:  # a head on this machine serving that dashboard: its token file
        from sluice.executor.cluster import auth

        for _, record in auth.daemon_records():
            if record.get("kind") == "head" and record.get("dashboard") == url:
                port = int(str(record["address"]).rsplit(":", 1)[1])
                return auth.find_token(port)
    except Exception:  # noqa: BLE001 - no records: no token
        return None
    return None


class Refused(Exception):
    """An HTTP error answer: its status ``code`` and the ``message`` its JSON body gave."""

    def __init__(self, code: int, message: str, reason: str):
        super().__init__(f"{code}: {message or reason}")
        self.code = code
        self.message = message
        self.reason = reason


def request_json(url: str, method: str = "GET", data: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 30.0) -> Any:
    """The JSON body of one HTTP request to ``url``: :class:`Refused` for an error answer,
    ``OSError`` (``urllib.error.URLError``) when nothing answers."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        try:
            message = str(json.load(err).get("msg", ""))
        except (ValueError, AttributeError):
            message = ""
        raise Refused(err.code, message, str(err.reason)) from None


def fetch(address: str, path: str, params: dict[str, Any] | None = None,
          timeout: float = 30.0) -> Any:
    """The ``data.result`` of ``GET address/path?params``; a clear error when the dashboard
    is not there or refuses."""
    url = f"{dashboard_url(address)}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    token = token_for(dashboard_url(address))
    try:
        body = request_json(url, headers={"Authorization": f"Bearer {token}"} if token else None,
                            timeout=timeout)
    except Refused as err:
        if err.code == 400:
            raise ValueError(err.message or f"the dashboard at {address} refused {path}") from None
        raise ConnectionError(f"the dashboard at {address} answered {err.code} to {path}: "
                              f"{err.message or err.reason}") from None
    except OSError as err:
        raise ConnectionError(f"no sluice dashboard answers at {address} ({err}); start the "
                              f"runtime with sluice.init(include_dashboard=True), or give "
                              f"the address it printed") from None
    return body["data"]["result"]


def fetch_rows(address: str, kind: str) -> list[dict[str, Any]]:
    """Every row of state table ``kind`` from the dashboard at ``address``."""
    return fetch(address, f"/api/v0/{kind}", {"limit": ALL_ROWS})["result"]
