"""The runtime: shards, task dispatch, retries and timeouts, configuration, the job interpreter."""

from cadenza.engine._api import (
    ActivityTaskInfo,
    HeartbeatResponse,
    PendingActivityView,
    QueryRequest,
    StartWorkflowRequest,
    StartWorkflowResponse,
    TaskToken,
    WorkflowDescription,
    WorkflowTaskInfo,
)
from cadenza.engine._commands import (
    CancelTimer,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    RecordMarker,
    RequestCancelActivity,
    RequestCancelExternal,
    ScheduleActivity,
    StartChildWorkflow,
    StartTimer,
)
from cadenza.engine._config import DEFAULT_DEV_DATABASE, Settings, load_settings
from cadenza.engine._engine import Engine
from cadenza.engine._retry import decide_retry
from cadenza.engine._secrets import (
    MASK,
    SecretBox,
    SecretDecryptionError,
    SecretMaskingFilter,
    generate_key,
    mask,
    redact,
)
from cadenza.engine._shards import shard_for
from cadenza.engine._workflow_tasks import StaleTaskError

__all__ = [
    "DEFAULT_DEV_DATABASE",
    "MASK",
    "ActivityTaskInfo",
    "CancelTimer",
    "CancelWorkflow",
    "Command",
    "CompleteWorkflow",
    "ContinueAsNew",
    "Engine",
    "FailWorkflow",
    "HeartbeatResponse",
    "PendingActivityView",
    "QueryRequest",
    "RecordMarker",
    "RequestCancelActivity",
    "RequestCancelExternal",
    "ScheduleActivity",
    "SecretBox",
    "SecretDecryptionError",
    "SecretMaskingFilter",
    "Settings",
    "StaleTaskError",
    "StartChildWorkflow",
    "StartTimer",
    "StartWorkflowRequest",
    "StartWorkflowResponse",
    "TaskToken",
    "WorkflowDescription",
    "WorkflowTaskInfo",
    "decide_retry",
    "generate_key",
    "load_settings",
    "mask",
    "redact",
    "shard_for",
]
