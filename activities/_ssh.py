"""asyncssh, imported without the deprecation warning its DSA key types raise on
cryptography 51 and newer (nothing of ours uses DSA; every CLI command would print it)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

__all__ = ["asyncssh"]
