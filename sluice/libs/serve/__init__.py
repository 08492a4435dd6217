"""sluice.serve: online serving with Ray Serve's API (``import sluice.serve as serve``).

Deployments composed with ``.bind()`` lower to a compiler Plan; a controller actor keeps
their replicas running; handles and the HTTP proxy call replicas over direct channels.
"""

from sluice.libs.serve import dashboard_page  # noqa: F401  (registers the dashboard page)
from sluice.libs.serve import exceptions
from sluice.libs.serve.api import (
    ApplicationStatusOverview,
    DeploymentStatusOverview,
    ServeStatus,
    delete,
    get_app_handle,
    get_deployment_handle,
    get_replica_context,
    run,
    shutdown,
    start,
    status,
)
from sluice.libs.serve.batching import batch
from sluice.libs.serve.config import AutoscalingConfig, DeploymentConfig, HTTPOptions
from sluice.libs.serve.deployment import Application, Deployment, deployment, ingress
from sluice.libs.serve.handle import (
    DeploymentHandle,
    DeploymentResponse,
    DeploymentResponseGenerator,
)

__all__ = ["Application", "ApplicationStatusOverview", "AutoscalingConfig", "Deployment",
           "DeploymentConfig", "DeploymentHandle", "DeploymentResponse",
           "DeploymentResponseGenerator", "DeploymentStatusOverview", "HTTPOptions",
           "ServeStatus", "batch", "delete", "deployment", "exceptions", "get_app_handle",
           "get_deployment_handle", "get_replica_context", "ingress", "run", "shutdown",
           "start", "status"]
