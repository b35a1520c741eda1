"""Evidence and clips from any API replica (hub.storage): a vision worker stand-in in
another process writes an incident's evidence image and clip into the shared data
directory; this process, an API replica that wrote neither, serves both."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from hub.alerts.service import AlertService
from hub.api.app import create_app
from hub.api.deps import AppContext, Principal
from hub.clock import ManualClock
from hub.domain import Category
from hub.vision import clipstore
from tests.integration.alerting import T0, alarm, pool_for, service

REPO = Path(__file__).resolve().parents[2]
OP = Principal("2", "operator", "")

# The other process: evidence.write as the vision worker calls it, and a finished
# clip moved in under its key as the clip writer's encoder leaves it.
WRITER = """
import sys
from datetime import datetime
from pathlib import Path
import numpy as np
from hub.storage import FileStorage
from hub.vision import evidence
shared, clip_key = Path(sys.argv[1]), sys.argv[2]
img = np.zeros((48, 64, 3), np.uint8)
img[10:30, 20:40] = (0, 0, 255)
print(evidence.write(shared / "evidence", "cam-3", datetime.fromisoformat(sys.argv[3]),
                     "fall", img))
scratch = Path(sys.argv[4])
scratch.write_bytes(b"\\x00\\x00\\x00\\x18ftypisom" + bytes(range(256)) * 40)
FileStorage(shared).put_file(clip_key, scratch)
"""


def _op(request: Request) -> Principal:
    return OP


@pytest.fixture
def replica(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, AlertService, Path]]:
    shared = tmp_path / "shared"
    shared.mkdir()
    with pool_for(db_url) as pool:
        svc = service(pool, ManualClock(T0 + timedelta(minutes=10)), data_dir=shared)
        ctx = AppContext(pool=pool, site=svc.site, tree=svc.tree, alerts=svc,
                         data_dir=shared, principal=_op)
        with TestClient(create_app(ctx)) as client:
            yield client, svc, shared


def test_a_replica_that_wrote_nothing_serves_evidence_and_clip(
        replica: tuple[TestClient, AlertService, Path], tmp_path: Path) -> None:
    client, svc, shared = replica
    clip_key = clipstore.clip_path("fall", "cam-3", T0, "fall")
    out = subprocess.run(
        [sys.executable, "-c", WRITER, str(shared), clip_key, T0.isoformat(),
         str(tmp_path / "encoded.mp4")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    image_key = out.stdout.strip().splitlines()[-1]
    assert image_key.startswith("evidence/cam-3/")
    # Nothing but whole files under the keys: no writer's temporary file left.
    assert not [p for p in shared.rglob("*") if p.name.startswith(".")]
    a = replace(alarm("fall:cam-3", category=Category.FALL), evidence_image=image_key,
                evidence={"clip": {"path": clip_key, "from": T0.isoformat(),
                                   "to": (T0 + timedelta(seconds=20)).isoformat()}})
    [r] = svc.apply_now([a])
    assert r.incident is not None
    got = client.get(f"/api/incidents/{r.incident.id}/evidence")
    assert got.status_code == 200, got.text
    assert got.content[:2] == b"\xff\xd8" and got.content == (shared / image_key).read_bytes()
    clip = client.get(f"/api/incidents/{r.incident.id}/clip")
    assert clip.status_code == 200, clip.text
    assert clip.content == (shared / clip_key).read_bytes()
    part = client.get(f"/api/incidents/{r.incident.id}/clip", headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == b"ftypisom"


def test_a_key_that_leaves_the_store_is_not_served(
        replica: tuple[TestClient, AlertService, Path], tmp_path: Path) -> None:
    client, svc, shared = replica
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8secret")
    [r] = svc.apply_now([replace(alarm("fall:x", category=Category.FALL),
                                 evidence_image="../secret.jpg")])
    assert r.incident is not None
    assert client.get(f"/api/incidents/{r.incident.id}/evidence").status_code == 404
