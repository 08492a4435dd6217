"""Write notebooks/04-serve.ipynb and execute it, saving its outputs.

Run from anywhere: ``python notebooks/build_04_serve.py``. The notebook is built
from the cells below, executed top to bottom in a fresh ``python3`` kernel (with
this checkout on its PYTHONPATH), and saved with its outputs. It serves a
two-deployment app (an ingress calling a model through a handle) on a free
loopback port, draws its plan, sends requests over HTTP and through handles,
shows a ``@serve.batch`` method's batches, and plots an autoscaling run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nbbuild, beside this file
import nbbuild

REPO_ROOT = nbbuild.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "04-serve.ipynb"

CELLS = [
    ("md", """\
# Online serving with `sluice.serve`

`sluice.serve` has Ray Serve's API: **deployments** (a class or function run by a set of
replica actors) composed with `.bind()`, **handles** to call one deployment from another
or from the driver, HTTP on uvicorn + starlette, `@serve.batch`, and autoscaling. An
application is a `.bind()` graph like any other in sluice: `serve.run` lowers it to a
compiler Plan (a deployment is a replica set of actors, a handle an edge) and a
controller actor keeps its replicas running.

This notebook:

1. builds a two-deployment app, an `Ingress` calling a `Model` through a handle, and
   draws its plan;
2. serves it and sends requests over HTTP and through handles;
3. calls a `@serve.batch` method concurrently and shows the batches it was given;
4. runs an autoscaling deployment under load and plots its replicas and latency."""),
    ("code", """\
import asyncio
import json
import socket
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot as plt
import pandas as pd

import sluice
from sluice import serve

sluice.init(num_cpus=2)

def free_port():
    \"\"\"A TCP port nobody listens on now (the OS picks it).\"\"\"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

port = free_port()
serve.start(http_options={"host": "127.0.0.1", "port": port})   # the controller and the HTTP proxy
print("serve started")"""),
    ("md", """\
## A two-deployment app

`Model` multiplies its input by a scale given at construction. `Ingress` receives HTTP
requests (a starlette `Request`) and calls the model: `Model.bind(10)` passed to
`Ingress.bind(...)` arrives in `Ingress.__init__` as a `DeploymentHandle`, and
`await self.model.remote(x)` is a call to one of the model's replicas. A method other
than `__call__` is reached with `handle.method.remote(...)`.

`ray_actor_options={"num_cpus": 0.25}` lets several replicas share one CPU (this
notebook runs with two). `Model.predict_batch` is a `@serve.batch` method: concurrent
calls are gathered into one call on a list, of at most `max_batch_size` items; it
returns each answer with the size of the batch it was in."""),
    ("code", """\
@serve.deployment(num_replicas=2, max_ongoing_requests=16, ray_actor_options={"num_cpus": 0.25})
class Model:
    def __init__(self, scale):
        self.scale = scale

    def __call__(self, x):
        return x * self.scale

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.25)
    async def predict_batch(self, xs):
        return [(x * self.scale, len(xs)) for x in xs]


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Ingress:
    def __init__(self, model):
        self.model = model                      # a DeploymentHandle to Model

    async def predict(self, x):
        return {"x": x, "y": await self.model.remote(x)}

    async def __call__(self, request):
        return await self.predict(int(request.query_params["x"]))


app = Ingress.bind(Model.bind(10))"""),
    ("md", """\
## Its plan

`app.explain()` prints the deployments (replicas, resources, the ingress, the handle
edges) and the compiler Plan they lower to; `app.visualize()` draws the same Plan (a
`graphviz.Digraph`, which Jupyter shows as SVG). `serve.run` deploys this Plan."""),
    ("code", "print(app.explain())"),
    ("code", "app.visualize()"),
    ("md", """\
## Serving it

`serve.run(app, route_prefix="/")` returns once every replica is ready, with a handle to
the ingress. Over HTTP, a request to `/?x=...` on the port serve was started with reaches
`Ingress.__call__`, which returns a dict: the proxy sends it as JSON."""),
    ("code", """\
ingress = serve.run(app, name="default", route_prefix="/")

def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as answer:
        return answer.status, json.loads(answer.read())

for x in (1, 2, 3):
    print(f"GET /?x={x} ->", *get(f"/?x={x}"))"""),
    ("md", """\
The same through handles, from this driver: `ingress.predict.remote(...)` calls the
ingress's `predict` method, and `serve.get_deployment_handle` gives a handle to the model
itself. A call returns a `DeploymentResponse` at once. In a script, `.result()` waits for
its answer; a notebook's cells run on Jupyter's event loop, where blocking would stall
the calls, so here we `await` it (as code inside a replica does). A response can be
passed to another call without waiting for it: the second call gets the first one's
answer."""),
    ("code", """\
print("ingress.predict.remote(4) ->", await ingress.predict.remote(4))
model = serve.get_deployment_handle("Model", app_name="default")
print("model.remote(5) ->", await model.remote(5))
print("model.remote(model.remote(6)) ->", await model.remote(model.remote(6)))
app_status = serve.status().applications["default"]
print("application:", app_status.status)
for name, dep in sorted(app_status.deployments.items()):
    print(f"  {name}: {dep.status}, replicas {dict(dep.replica_states)}")"""),
    ("md", """\
## A batch method

Sixteen concurrent calls to `predict_batch`: each caller gets its own answer, and the
answers say how large a batch each call was part of. The calls are spread over the model's
two replicas; each replica gathers the calls that arrive within `batch_wait_timeout_s` of
the first one, up to `max_batch_size`."""),
    ("code", """\
responses = [model.predict_batch.remote(i) for i in range(16)]    # all sent before any answer
answers = await asyncio.gather(*responses)
assert [y for y, _ in answers] == [10 * i for i in range(16)]
print("16 answers, all correct:", [y for y, _ in answers])
sizes = Counter(size for _, size in answers)          # a batch of n gives n answers of size n
batches = sorted((size for size, n in sizes.items() for _ in range(n // size)), reverse=True)
print("batches:", batches, f"(largest {max(batches)}, at most 8)")"""),
    ("md", """\
## Autoscaling under load

A deployment with an `autoscaling_config` (Ray Serve's names and policy) gets a replica
count between `min_replicas` and `max_replicas`: the controller aims at
`target_ongoing_requests` per replica, averaged over `look_back_period_s`, and changes
the count only after the need has lasted `upscale_delay_s` (up) or `downscale_delay_s`
(down). The delays here are short, for the demo (Ray's defaults are 30 s and 600 s).

`Sleeper` answers after 50 ms. Twelve client threads call it back to back for a while,
then stop; meanwhile we sample `serve.status()` for its running replicas, and every
call's latency. The client threads have no event loop of their own, so they call
`.result()`."""),
    ("code", """\
@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2,
                        "upscale_delay_s": 1.0, "downscale_delay_s": 3.0,
                        "metrics_interval_s": 0.25, "look_back_period_s": 1.0})
class Sleeper:
    async def __call__(self, x):
        await asyncio.sleep(0.05)
        return x


sleeper = serve.run(Sleeper.bind(), name="sleepy", route_prefix="/sleepy")

def running_replicas():
    dep = serve.status().applications["sleepy"].deployments["Sleeper"]
    return dep.replica_states.get("RUNNING", 0)

print("replicas at start:", running_replicas())"""),
    ("code", """\
LOAD_S = 12.0                 # seconds of load
CLIENTS = 12                  # client threads, each with one call in flight
t0 = time.monotonic()
samples, latencies = [], []   # (seconds since t0, running replicas), (seconds, ms)

def client(stop_at):
    while time.monotonic() < stop_at:
        sent = time.monotonic()
        sleeper.remote(1).result()
        latencies.append((sent - t0, 1000 * (time.monotonic() - sent)))

def sample_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while True:
        samples.append((time.monotonic() - t0, running_replicas()))
        if condition() or time.monotonic() > deadline:
            return
        time.sleep(0.25)

with ThreadPoolExecutor(CLIENTS) as pool:
    stop_at = t0 + LOAD_S
    for _ in range(CLIENTS):
        pool.submit(client, stop_at)
    sample_until(lambda: time.monotonic() > stop_at, LOAD_S + 1)
# No more load: wait for the count to come back to min_replicas (3 s of calm, then down).
sample_until(lambda: samples[-1][1] == 1 and samples[-1][0] > LOAD_S + 4, 60)

replicas = pd.DataFrame(samples, columns=["t", "replicas"])
latency = pd.DataFrame(latencies, columns=["t", "ms"])
print("replicas: start", replicas.replicas.iloc[0], "peak", replicas.replicas.max(),
      "end", replicas.replicas.iloc[-1])
print("calls answered:", len(latency))"""),
    ("code", """\
fig, (ax_r, ax_l) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
ax_r.step(replicas.t, replicas.replicas, where="post")
ax_r.axvspan(0, LOAD_S, color="tab:orange", alpha=0.15, label=f"{CLIENTS} clients")
ax_r.set_ylabel("running replicas")
ax_r.set_ylim(0, 5)
ax_r.legend(loc="upper left")
by_half_second = latency.groupby((latency.t * 2).astype(int) / 2).ms.median()
ax_l.plot(by_half_second.index, by_half_second.values, marker=".")
ax_l.set_ylim(bottom=0)
ax_l.set_ylabel("median latency (ms)")
ax_l.set_xlabel("seconds")
fig.suptitle("Sleeper under load: replicas and latency")
fig.tight_layout()
plt.show()"""),
    ("md", """\
While one replica serves twelve callers, the calls queue (at most `max_ongoing_requests=5`
run in a replica at once) and latency is about twice the 50 ms of work; as replicas
are added it falls toward 50 ms. Once the load stops, the count goes back to
`min_replicas` after `downscale_delay_s`.

## Shutting down

`serve.shutdown()` stops every app, the proxy and the controller."""),
    ("code", """\
serve.shutdown()
sluice.shutdown()
print("shut down")"""),
]


def build_notebook() -> nbformat.NotebookNode:
    """The notebook's cells, without outputs."""
    return nbbuild.build_notebook(CELLS)


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``cwd``."""
    return nbbuild.execute_notebook(nb, cwd)


if __name__ == "__main__":
    sys.exit(nbbuild.main(CELLS, NOTEBOOK))
