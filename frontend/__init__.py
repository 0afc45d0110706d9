"""The HTTP frontend (aiohttp): REST API, worker protocol, web console, metrics; and the CLI.

``create_app(engine, settings)`` builds the application; ``RemoteService`` is the client side
of the same API, used by ``Client.connect("http://…")`` and remote workers. See
``docs/api.md``.
"""

from cadenza.frontend._app import create_app
from cadenza.frontend._wire import AccessDeniedError, ServerError
from cadenza.frontend.remote import RemoteService, ServerUnavailableError

__all__ = [
    "AccessDeniedError",
    "RemoteService",
    "ServerError",
    "ServerUnavailableError",
    "create_app",
]
