"""The cluster token, TLS, and the folder where a machine's daemons leave them.

The head makes a random token when it starts and writes it, readable only by
its user, to ``{tmp}/sluice-{uid}/head-{port}/token``: drivers and nodes on
the same machine find it there; from elsewhere they pass ``token=``,
``--token`` or ``SLUICE_TOKEN``. Every gRPC call carries it as
``authorization: Bearer TOKEN``; a missing or wrong one is refused with
UNAUTHENTICATED and a message naming the cause.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import grpc

DEFAULT_PORT = 6380
MAX_MESSAGE = 256 << 20


class AuthError(ConnectionError):
    """The cluster refused this process's token (missing or wrong)."""


class NoHeadError(ConnectionError):
    """No sluice head answers at the address (nothing listens there, or it is unreachable)."""


def cluster_dir() -> Path:
    """This user's folder for the daemons it starts (tokens, pid files, logs)."""
    path = Path(tempfile.gettempdir()) / f"sluice-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def head_dir(port: int) -> Path:
    path = cluster_dir() / f"head-{port}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def new_token(port: int, token: str | None = None) -> str:
    """Write the cluster token of the head on ``port`` (mode 0600): ``token``, or a new random one."""
    token = token or secrets.token_hex(32)
    path = head_dir(port) / "token"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)
    return token


def forget_token(port: int, token: str) -> None:
    """Remove the token file of the head on ``port`` when it still holds ``token`` (a stopped
    head's file must not be offered to the next head that gets the same port)."""
    path = cluster_dir() / f"head-{port}" / "token"
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


def find_token(port: int, given: str | None = None) -> str | None:
    """The token to use: the one given, else ``SLUICE_TOKEN``, else a local head's file."""
    if given:
        return given
    env = os.environ.get("SLUICE_TOKEN")
    if env:
        return env
    path = cluster_dir() / f"head-{port}" / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def parse_address(address: str) -> tuple[str, int]:
    """``sluice://HOST:PORT``, ``HOST:PORT`` or ``HOST`` -> (host, port)."""
    text = address
    if text.startswith("sluice://"):
        text = text[len("sluice://"):]
    elif "://" in text:
        raise ValueError(f"address {address!r}: a sluice cluster address looks like "
                         f"sluice://HOST:PORT (for a Dask cluster pass backend='dask')")
    host, _, port = text.rpartition(":")
    if not host:
        return text, DEFAULT_PORT
    if not port.isdigit():
        raise ValueError(f"address {address!r}: the port must be a number, as in sluice://HOST:6380")
    return host, int(port)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (none at all for an empty one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class TokenCheck(grpc.ServerInterceptor):
    """Refuses every call whose ``authorization`` header is not this cluster's token."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, details):
        sent = dict(details.invocation_metadata).get("authorization")
        if sent is None:
            why = ("no sluice cluster token was sent; pass token= to sluice.init, --token, "
                   "or set SLUICE_TOKEN")
        elif not hmac.compare_digest(sent.encode(), self._expected):
            why = ("the sluice cluster token does not match this cluster's; use the token the "
                   "head printed (or its token file) in token=, --token or SLUICE_TOKEN")
        else:
            return continuation(details)
        return _refusal(continuation(details), why)


def _refusal(handler: Any, why: str) -> Any:
    """A handler of the same call shape as ``handler`` that refuses with UNAUTHENTICATED."""
    if handler is None:
        return None

    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler,
             (True, True): grpc.stream_stream_rpc_method_handler}
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(refuse, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


def open_channel(host: str, port: int, tls_root: bytes | None = None) -> grpc.Channel:
    """A gRPC channel to the head (TLS when a root certificate is given)."""
    target = f"{host}:{port}"
    options = [("grpc.max_send_message_length", MAX_MESSAGE),
               ("grpc.max_receive_message_length", MAX_MESSAGE)]
    if tls_root is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=tls_root)
        return grpc.secure_channel(target, creds, options=options)
    return grpc.insecure_channel(target, options=options)


def server_credentials(cert: bytes, key: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key, cert)])


def auth_error(err: grpc.RpcError, address: str) -> Exception:
    """A clear error for a failed call to the head at ``address``."""
    code = err.code() if hasattr(err, "code") else None
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthError(f"the sluice head at {address} refused this connection: {err.details()}")
    if code == grpc.StatusCode.UNAVAILABLE:
        why = (err.details() or "").rsplit(": ", 1)[-1]  # e.g. "Connection refused"
        return NoHeadError(f"no sluice head answers at {address} ({why}); start one with "
                               f"`sluice start --head` or check the address")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NoHeadError(f"no sluice head answered at {address} in time; check the address "
                               f"and that a firewall lets this machine reach it")
    return ConnectionError(f"the sluice head at {address} failed: {err}")


def write_daemon_record(kind: str, pid: int, info: dict) -> Path:
    """Note a daemon this machine started, so ``sluice stop`` can find it."""
    from sluice.executor.process import process_start

    path = cluster_dir() / f"daemon-{pid}.json"
    path.write_text(json.dumps({"kind": kind, "pid": pid, "start": process_start(pid), **info}))
    return path


def forget_daemon(pid: int) -> None:
    (cluster_dir() / f"daemon-{pid}.json").unlink(missing_ok=True)


def daemon_records() -> list[tuple[Path, dict]]:
    """The daemons this machine started that still run; records of dead ones are removed
    (a reused pid is told apart by its start time)."""
    from sluice.executor.process import process_alive

    out = []
    for path in sorted(cluster_dir().glob("daemon-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record.get("pid"), int) and process_alive(record["pid"], record.get("start")):
            out.append((path, record))
        else:
            path.unlink(missing_ok=True)
    return out
