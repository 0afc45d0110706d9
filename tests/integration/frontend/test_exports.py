"""The public surface of ``cadenza.frontend`` changes only on purpose."""

from __future__ import annotations

import cadenza.frontend
import cadenza.frontend.remote


def test_frontend_exports() -> None:
    assert cadenza.frontend.__all__ == [
        "AccessDeniedError",
        "RemoteService",
        "ServerError",
        "ServerUnavailableError",
        "create_app",
    ]
    for name in cadenza.frontend.__all__:
        assert getattr(cadenza.frontend, name) is not None


def test_remote_module_exports() -> None:
    assert cadenza.frontend.remote.__all__ == [
        "AccessDeniedError",
        "RemoteService",
        "ServerError",
        "ServerUnavailableError",
    ]
    assert cadenza.frontend.remote.RemoteService is cadenza.frontend.RemoteService
