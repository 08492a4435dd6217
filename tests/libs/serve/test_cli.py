"""``sluice serve`` (sluice/libs/serve/cli.py): a real process serving real HTTP, stopped
with SIGINT; config files read and applied; errors as one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sluice.libs.serve import deployment
from sluice.libs.serve.cli import UsageError, read_config, with_overrides
from tests.libs.serve.helpers import free_port

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 120

APP = '''
from sluice import serve


@serve.deployment
class Hello:
    def __init__(self, greeting="hello"):
        self.greeting = greeting

    def __call__(self, request):
        return f"{self.greeting} {request.query_params.get('name', 'world')}"


app = Hello.bind()


def builder(args):
    return Hello.bind(args.get("greeting", "hi"))


not_an_app = 42
'''


def sluice_cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SLUICE_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "sluice.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read().decode()
    except OSError:
        return None


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "myapp.py").write_text(APP)
    return tmp_path


def test_run_serves_a_builders_app_until_sigint_then_frees_its_port(app_dir: Path) -> None:
    port = free_port()
    proc = sluice_cli("serve", "run", "myapp:builder", "greeting=hey", "--port", str(port),
                      cwd=app_dir)
    try:
        deadline = time.monotonic() + DEADLINE_S
        body = None
        while body is None and proc.poll() is None and time.monotonic() < deadline:
            body = get(f"http://127.0.0.1:{port}/?name=bob")
            if body is None:
                time.sleep(0.1)
        assert body == "hey bob", proc.stderr.read() if proc.poll() is not None else body
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "app 'default' at http://127.0.0.1" in err and "shutting down" in err
    assert get(f"http://127.0.0.1:{port}/") is None  # nothing listens any more


@pytest.mark.parametrize("target, message", [
    ("nomodule:app", "cannot import 'nomodule'"),
    ("myapp:missing", "module 'myapp' has no 'missing'"),
    ("myapp:not_an_app", "is an application, not a builder|gave int, not an application"),
    ("myapp", "is not MODULE:APP"),
])
def test_run_refuses_a_bad_target_in_one_line(app_dir: Path, target: str, message: str) -> None:
    proc = sluice_cli("serve", "run", target, "--port", str(free_port()), cwd=app_dir)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 2
    assert err.startswith("sluice serve run: error:") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err


def test_status_without_a_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    proc = sluice_cli("serve", "status", "--address", "sluice://127.0.0.1:1", cwd=tmp_path)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 2
    assert "sluice serve status: error: no sluice cluster to connect to" in err
    assert "sluice start --head" in err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return str(path)


def test_a_config_file_is_read_and_checked(tmp_path: Path) -> None:
    apps, http = read_config(write(tmp_path, """
http_options: {host: 127.0.0.1, port: 8001}
applications:
  - name: a
    route_prefix: /a
    import_path: myapp:app
  - name: b
    route_prefix: /b
    import_path: myapp:builder
    args: {greeting: yo}
    deployments: [{name: Hello, num_replicas: 2}]
"""))
    assert [a["name"] for a in apps] == ["a", "b"] and http == {"host": "127.0.0.1", "port": 8001}
    for text, message in [
        ("applications: [{name: a, route_prefix: /}, ]", "needs an import_path"),
        ("applications: [{import_path: m:a}, {import_path: m:b, name: b}]", "route_prefix '/' is taken"),
        ("applications: [{import_path: m:a, name: x}, {import_path: m:b, name: x, route_prefix: /b}]",
         "a second application named 'x'"),
        ("applications: [{import_path: m:a, colour: red}]", "unknown key\\(s\\) \\['colour'\\]"),
        ("apps: []", "must be a mapping with an 'applications' list"),
    ]:
        with pytest.raises(UsageError, match=message):
            read_config(write(tmp_path, text))
    with pytest.raises(UsageError, match="cannot read"):
        read_config(str(tmp_path / "missing.yaml"))


@deployment
class Model:
    def __call__(self, x):
        return x


@deployment
class Ingress:
    def __init__(self, model):
        self.model = model


def test_overrides_change_the_named_deployments_options_anywhere_in_the_app() -> None:
    app = Ingress.bind(Model.bind())
    changed = with_overrides(app, [{"name": "Model", "num_replicas": 3,
                                    "user_config": {"k": 1}}], "cfg")
    model = changed.args[0]
    assert model.deployment.name == "Model"
    assert model.deployment.config.num_replicas == 3
    assert model.deployment.config.user_config == {"k": 1}
    assert app.args[0].deployment.config.num_replicas == 1  # the app itself is unchanged
    with pytest.raises(UsageError, match="no deployment named \\['Nope'\\]"):
        with_overrides(app, [{"name": "Nope", "num_replicas": 2}], "cfg")
    with pytest.raises(UsageError, match="deployment 'Model'"):
        with_overrides(app, [{"name": "Model", "max_ongoing_requests": 0}], "cfg")


def test_deploy_status_and_shutdown_on_a_cluster_outlive_the_deploying_driver(
        app_dir: Path) -> None:
    from tests.cluster.conftest import LocalCluster

    port = free_port()
    (app_dir / "serve.yaml").write_text(f"""
http_options: {{host: 127.0.0.1, port: {port}}}
applications:
  - name: hello
    route_prefix: /
    import_path: myapp:builder
    args: {{greeting: hey}}
""")
    cluster = LocalCluster()
    try:
        deploy = sluice_cli("serve", "deploy", "serve.yaml", "--address", cluster.address,
                            cwd=app_dir)
        out, err = deploy.communicate(timeout=DEADLINE_S)
        assert deploy.returncode == 0, err
        assert "deployed app 'hello' (myapp:builder) at /" in out
        # The deploying driver is gone; the app still answers and reports RUNNING.
        assert get(f"http://127.0.0.1:{port}/?name=ada") == "hey ada"
        status = sluice_cli("serve", "status", "--address", cluster.address, cwd=app_dir)
        out, err = status.communicate(timeout=DEADLINE_S)
        assert status.returncode == 0, err
        assert "hello:\n    status: RUNNING" in out and "RUNNING: 1" in out
        stop = sluice_cli("serve", "shutdown", "--address", cluster.address, cwd=app_dir)
        out, err = stop.communicate(timeout=DEADLINE_S)
        assert stop.returncode == 0 and "serve shut down" in out, err
        deadline = time.monotonic() + DEADLINE_S  # the proxy's process is going away
        while get(f"http://127.0.0.1:{port}/") is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert get(f"http://127.0.0.1:{port}/") is None
    finally:
        cluster.stop()
