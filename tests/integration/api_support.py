"""Shared pieces of the HTTP API tests: a login by ``x-user`` header from a table of
principals, and the API over a real database and alert service."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from hub.alerts.service import AlertService
from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.clock import ManualClock
from tests.integration.alerting import T0, pool_for, service


def header_login(users: Mapping[str, Principal]) -> Callable[[Request], Principal]:
    """The caller is the ``x-user`` header's entry in ``users``; anyone else is a 401."""

    def who(request: Request) -> Principal:
        u = request.headers.get("x-user")
        if u not in users:
            raise HTTPException(401, "not logged in")
        return users[u]

    return who


@contextmanager
def api_env(db_url: str, tmp_path: Path, users: Mapping[str, Principal],
            api_docs: bool = True, **service_kw: Any) -> Iterator[tuple[TestClient, AlertService]]:
    """The app over a fresh alert service at ``T0`` (a manual clock), its data in
    ``tmp_path``; ``service_kw`` go to ``alerting.service``."""
    with pool_for(db_url) as pool:
        svc = service(pool, ManualClock(T0), data_dir=tmp_path, **service_kw)
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc, data_dir=tmp_path,
                         principal=header_login(users), api_docs=api_docs)
        with TestClient(create_app(ctx)) as client:
            yield client, svc


def H(user: str) -> dict[str, str]:
    return {"x-user": user}
