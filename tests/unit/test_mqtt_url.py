"""MQTT URLs: mqtt:// and, over TLS, mqtts:// with its CA and client certificate
files; mistakes are refused at load with the password masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.services import Tls, parse_mqtt_url


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x", encoding="ascii")
        out[name] = tmp_path / name
    return out


def test_plain_and_tls_defaults() -> None:
    b = parse_mqtt_url("mqtt://hub:pw@broker.example")
    assert (b.host, b.port, b.username, b.password, b.tls) == (
        "broker.example", 1883, "hub", "pw", None)
    t = parse_mqtt_url("mqtts://broker.example")
    assert t.port == 8883 and t.tls == Tls()  # the system's CAs
    assert t.url == "mqtts://broker.example:8883"


def test_tls_files_and_the_url_they_travel_in(files: dict[str, Path]) -> None:
    url = (f"mqtts://hub:pw-1_x@broker:8884?ca={files['ca.crt']}&cert={files['client.crt']}"
           f"&key={files['client.key']}")
    b = parse_mqtt_url(url)
    assert b.tls == Tls(str(files["ca.crt"]), str(files["client.crt"]), str(files["client.key"]))
    assert b.password == "pw-1_x" and b.port == 8884
    assert parse_mqtt_url(b.url) == b


@pytest.mark.parametrize(("url", "message"), [
    ("http://broker", "scheme must be mqtt:// or mqtts://"),
    ("mqtts://broker?cafile=/x", "unknown parameter"),
    ("mqtt://broker?ca=/x", "need mqtts://"),
    ("mqtts://broker?ca=/does/not/exist", "/does/not/exist does not exist"),
])
def test_mistakes_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mqtt_url(url)


def test_a_client_certificate_needs_its_key(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="needs both cert= and key="):
        parse_mqtt_url(f"mqtts://broker?cert={files['client.crt']}")


def test_the_password_is_masked_in_errors() -> None:
    with pytest.raises(ValueError) as e:
        parse_mqtt_url("mqtts://hub:secret@broker?bogus=1")
    assert "secret" not in str(e.value) and "hub:***@broker" in str(e.value)
