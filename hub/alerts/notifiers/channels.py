"""The site file's chat and SMS channels (``channels:``), one list of entries each
naming the grid unit whose notifications it carries, and the environment secrets
they sign or authenticate with.

Secrets never live in the site file: an entry names an environment variable
(``key_env: G01_WECOM`` is read from ``HUB_SECRET_G01_WECOM``), and a URL whose
query carries a robot's key, token or signature is refused at load, so a site file
can be committed and shared without leaking a group's robot."""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SECRET_PREFIX = "HUB_SECRET_"
# A name, not a value: upper case, digits and underscores, so a pasted key
# (mixed case, often with - or =) cannot pass for one.
EnvName = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,62}$")]
ChannelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")]
GridCode = Annotated[str, Field(pattern=r"^\d{6}(\d{3}(\d{3}(\d{2}(\d{2})?)?)?)?$")]
# Query parameters that are a robot's credential (WeCom key, DingTalk access_token,
# signatures) or a gateway's: none may be written into the site file.
_SECRET_QUERY = {"key", "access_token", "token", "sign", "secret", "signature", "password",
                 "apikey", "api_key", "appsecret"}
# A Feishu hook's last path part is its credential (…/bot/v2/hook/<uuid>).
_FEISHU_TOKEN_PATH = re.compile(r"/hook/[^/]+$")


class SecretMissing(LookupError):
    """A channel's environment variable is not set; the message names it."""


def secret(name: str) -> str:
    """``HUB_SECRET_<name>`` from the environment; raises :class:`SecretMissing`."""
    value = os.environ.get(SECRET_PREFIX + name, "")
    if not value:
        raise SecretMissing(f"{SECRET_PREFIX}{name} is not set")
    return value


def _no_secret_in_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise ValueError("the URL carries a user or password; name an environment "
                         "variable instead (auth_env)")
    named = sorted({k for k, _ in parse_qsl(parts.query)} & _SECRET_QUERY)
    if named:
        raise ValueError(f"the URL's query carries {named}: secrets come from the "
                         f"environment ({SECRET_PREFIX}<NAME>), never from the site file")
    return url


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ChannelName
    # The grid units whose notifications this channel carries (exact codes: a
    # community's group gets what reaches the community, not every grid's news).
    grids: list[GridCode] = Field(min_length=1)

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, v: str) -> str:
        return _no_secret_in_url(v)

    def secrets(self) -> list[str]:
        """The environment variables (without the prefix) this channel needs."""
        return []


class WeComChannel(_Channel):
    kind: Literal["wecom"]
    url: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    key_env: EnvName  # the group robot's webhook key

    def secrets(self) -> list[str]:
        return [self.key_env]


class DingTalkChannel(_Channel):
    kind: Literal["dingtalk"]
    url: str = "https://oapi.dingtalk.com/robot/send"
    token_env: EnvName  # access_token
    secret_env: EnvName | None = None  # the robot's 加签 secret (SEC...)
    style: Literal["markdown", "actionCard"] = "actionCard"

    def secrets(self) -> list[str]:
        return [self.token_env] + ([self.secret_env] if self.secret_env else [])


class FeishuChannel(_Channel):
    kind: Literal["feishu"]
    # The hook URL without its last part, which is the credential (token_env).
    url: str = "https://open.feishu.cn/open-apis/bot/v2/hook"
    token_env: EnvName
    secret_env: EnvName | None = None  # 签名校验 secret

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        _no_secret_in_url(v)
        if _FEISHU_TOKEN_PATH.search(urlsplit(v).path):
            raise ValueError("the hook's id is its credential: give the URL up to /hook "
                             "and the id as token_env")
        return v

    def secrets(self) -> list[str]:
        return [self.token_env] + ([self.secret_env] if self.secret_env else [])


class SmsGatewayChannel(_Channel):
    """SMS or voice through an HTTP gateway. ``body`` is a template filled with
    ``{message}``, ``{phone}``, ``{reference}`` (the delivery id) and ``{callback}``
    (where the gateway posts its delivery receipt), each JSON-escaped when
    ``content_type`` is JSON and form-escaped otherwise."""

    kind: Literal["sms"]
    url: str
    method: Literal["POST", "PUT"] = "POST"
    content_type: str = "application/json"
    auth_header: str = "Authorization"
    auth_env: EnvName | None = None  # the header's value
    body: str = Field(min_length=1, max_length=4000)
    # Receipts: the gateway calls {public_url}/api/notify/receipts/{name}?token=...;
    # the token is HUB_SECRET_<receipt_env>.
    receipt_env: EnvName | None = None
    grids: list[GridCode] = Field(default_factory=list)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _template(self) -> SmsGatewayChannel:
        if "{message}" not in self.body or "{phone}" not in self.body:
            raise ValueError("body must contain {message} and {phone}")
        try:
            self.body.format(message="", phone="", reference="", callback="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"body is not a valid template: {e}") from None
        return self

    def secrets(self) -> list[str]:
        return [n for n in (self.auth_env, self.receipt_env) if n]


ChannelConfig = Annotated[WeComChannel | DingTalkChannel | FeishuChannel | SmsGatewayChannel,
                          Field(discriminator="kind")]


class FamilyConfig(BaseModel):
    """The family-first cascade (hub.alerts.family)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: ChannelName | None = None  # an sms channel's name; None: no cascade
    window_s: float = Field(default=300, ge=10, le=3600)  # each contact's time to answer
    link_ttl_s: float = Field(default=6 * 3600, ge=60, le=7 * 86400)
    # The answer links' HMAC key: HUB_SECRET_<link_secret_env>.
    link_secret_env: EnvName = "FAMILY_LINK"


def check_channels(channels: list[ChannelConfig], family: FamilyConfig,
                   grid_codes: set[str]) -> None:
    names: set[str] = set()
    for i, c in enumerate(channels):
        if c.name in names:
            raise ValueError(f"channels.{i}.name: duplicate channel {c.name!r}")
        names.add(c.name)
        for g in c.grids:
            if g not in grid_codes:
                raise ValueError(f"channels.{i}.grids: unknown grid code {g}")
    if family.channel is not None:
        match = [c for c in channels if c.name == family.channel]
        if not match or match[0].kind != "sms":
            raise ValueError(f"family.channel: {family.channel!r} is not an sms channel")
