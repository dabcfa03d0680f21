"""Athena in the local cloud (being built)."""

from __future__ import annotations

from werkzeug.wrappers import Request

from localcloud.executors import CloudContext, WSGIApp


class Athena:
    name = "athena"

    def start(self, cloud: CloudContext) -> None:
        pass

    def stop(self) -> None:
        pass

    def route(self, request: Request) -> WSGIApp | None:
        return None


def make_executor() -> Athena:
    return Athena()
