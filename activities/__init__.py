"""Built-in activities (HTTP, SQL databases, e-mail, files, SFTP) and the activity context
they run in.

Each built-in activity is registered under a short name (``http``, ``sql``, ``email``,
``file``, ``sftp``) and
takes one configuration argument (a struct or a plain dict, validated before any I/O).
"""

from cadenza.activities._context import (
    ActivityContext,
    ActivityDefinition,
    ActivityInfo,
    defn,
    heartbeat,
    in_activity,
    info,
    is_cancelled,
    reset_context,
    set_context,
)
from cadenza.activities._email import (
    DEFAULT_MAX_MESSAGE_BYTES,
    EmailAttachment,
    EmailConfig,
    send_email,
    validate_email_config,
)
from cadenza.activities._file import file_step
from cadenza.activities._file_config import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_ROWS,
    DEFAULT_MAX_TEXT_BYTES,
    FileConfig,
    validate_file_config,
)
from cadenza.activities._http import (
    close_http_sessions,
    execute_http_request,
    http_request,
    reset_http_state,
)
from cadenza.activities._http_auth import reset_token_cache
from cadenza.activities._http_breaker import CircuitState, reset_circuit_breakers
from cadenza.activities._http_config import (
    BasicAuth,
    BearerAuth,
    CircuitBreakerConfig,
    HttpRequestConfig,
    OAuth2ClientCredentials,
)
from cadenza.activities._http_errors import invalid_config_error
from cadenza.activities._http_hosts import (
    HttpActivitySettings,
    configure_http_activity,
    http_activity_settings,
)
from cadenza.activities._local_paths import configure_file_roots, file_roots
from cadenza.activities._sftp import sftp_step
from cadenza.activities._sftp_config import SftpConfig, validate_sftp_config
from cadenza.activities._sql import sql_query
from cadenza.activities._sql_config import (
    SqlConnectionConfig,
    SqlStatement,
    SqlStepConfig,
    sql_text_fields,
    validate_sql_step_config,
)
from cadenza.activities._sql_errors import (
    SqlConnectionError,
    SqlError,
    SqlResultTooLarge,
    SqlTimeout,
    SqlTransientError,
    classify_sql_error,
)
from cadenza.activities._sql_pools import (
    close_sql_pools,
    get_sql_connection,
    register_sql_connection,
    sql_pool_status,
    unregister_sql_connection,
)

BUILTIN_ACTIVITIES = (http_request, sql_query, send_email, file_step, sftp_step)
"""The built-in activity functions, for ``Worker(activities=[*BUILTIN_ACTIVITIES, ...])``."""


async def close_builtin_resources() -> None:
    """Close the shared HTTP sessions and SQL pools (a worker calls this on shutdown)."""
    await close_http_sessions()
    await close_sql_pools()


__all__ = [
    "BUILTIN_ACTIVITIES",
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_MAX_TEXT_BYTES",
    "ActivityContext",
    "ActivityDefinition",
    "ActivityInfo",
    "BasicAuth",
    "BearerAuth",
    "CircuitBreakerConfig",
    "CircuitState",
    "EmailAttachment",
    "EmailConfig",
    "FileConfig",
    "HttpActivitySettings",
    "HttpRequestConfig",
    "OAuth2ClientCredentials",
    "SftpConfig",
    "SqlConnectionConfig",
    "SqlConnectionError",
    "SqlError",
    "SqlResultTooLarge",
    "SqlStatement",
    "SqlStepConfig",
    "SqlTimeout",
    "SqlTransientError",
    "classify_sql_error",
    "close_builtin_resources",
    "close_http_sessions",
    "close_sql_pools",
    "configure_file_roots",
    "configure_http_activity",
    "defn",
    "execute_http_request",
    "file_roots",
    "file_step",
    "get_sql_connection",
    "heartbeat",
    "http_activity_settings",
    "http_request",
    "in_activity",
    "info",
    "invalid_config_error",
    "is_cancelled",
    "register_sql_connection",
    "reset_circuit_breakers",
    "reset_context",
    "reset_http_state",
    "reset_token_cache",
    "send_email",
    "set_context",
    "sftp_step",
    "sql_pool_status",
    "sql_query",
    "sql_text_fields",
    "unregister_sql_connection",
    "validate_email_config",
    "validate_file_config",
    "validate_sftp_config",
    "validate_sql_step_config",
]
