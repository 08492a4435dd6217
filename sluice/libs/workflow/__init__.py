"""sluice.workflow: durable DAG runs that resume after a crash, and cron-scheduled workflows.

``run(dag)`` runs a ``.bind()`` DAG with every step's output checkpointed in a
storage folder (SQLite metadata + checkpoint files); a run whose driver dies shows
RESUMABLE and ``resume(workflow_id)`` re-executes only the steps without a
checkpoint. ``schedule(...)`` saves a cron schedule that a ``Scheduler`` (or the
``sluice scheduler`` daemon) fires.
"""

from sluice.libs.workflow import dashboard_page  # noqa: F401  (registers the dashboard page)
from sluice.libs.workflow.api import (
                                      cancel,
                                      delete,
                                      get_output,
                                      get_status,
                                      list_all,
                                      resume,
                                      resume_async,
                                      run,
                                      run_async,
                                      schedule,
)
from sluice.libs.workflow.cron import CronError
from sluice.libs.workflow.engine import WorkflowCancelledError, WorkflowError
from sluice.libs.workflow.scheduler import Scheduler, TargetError
from sluice.libs.workflow.status import StepStatus, WorkflowStatus
from sluice.libs.workflow.storage import StorageError, WorkflowStorage

__all__ = [
                                      "CronError",
                                      "Scheduler",
                                      "StepStatus",
                                      "StorageError",
                                      "TargetError",
                                      "WorkflowCancelledError",
                                      "WorkflowError",
                                      "WorkflowStatus",
                                      "WorkflowStorage",
                                      "cancel",
                                      "delete",
                                      "get_output",
                                      "get_status",
                                      "list_all",
                                      "resume",
                                      "resume_async",
                                      "run",
                                      "run_async",
                                      "schedule",
]
