"""The one error a runner answers a request with (the runner itself lives on)."""

from __future__ import annotations


class RequestError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
