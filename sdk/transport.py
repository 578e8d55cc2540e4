"""Readable reasons for failed network calls, for clients and model sources alike."""

from __future__ import annotations

import socket


def failure_reason(error: BaseException) -> str:
    """A short reason for a transport failure, from the innermost OS error when there is one."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return "host not found"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    if "timeout" in type(error).__name__.lower():
        return "timed out"
    return str(error) or type(error).__name__
