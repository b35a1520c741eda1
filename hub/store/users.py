"""Users, sessions and login attempts in PostgreSQL.

Passwords are hashed with argon2 (argon2-cffi's defaults, RFC 9106 low-memory
profile). Session and API tokens are random 256-bit strings handed to the client once;
the database keeps only their SHA-256 digest, which is enough for a secret of that
entropy and keeps the per-request lookup to one indexed read.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg.rows import dict_row

from hub import passwords

if TYPE_CHECKING:
    from hub.config import Site

log = logging.getLogger(__name__)

ROLES = ("admin", "operator", "grid_worker", "viewer")
Role = Literal["admin", "operator", "grid_worker", "viewer"]
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SCOPE_RE = re.compile(r"^\d{6}(\d{3}(\d{3}(\d{2}(\d{2})?)?)?)?$")
MIN_PASSWORD = passwords.MIN_LENGTH

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong username costs the same
# time as a wrong password and response times do not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user record that cannot be created or changed; the message says why."""


class UserConflict(UserError):
    """The username is taken, or the person is already linked to another account;
    ``code`` says which (``username_taken``, ``person_taken``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# The unique index that keeps one account per person (migration 0004).
_PERSON_KEY = "users_person_key"


def _conflict(e: psycopg.errors.UniqueViolation, username: str,
              person_id: str | None) -> UserConflict:
    if e.diag.constraint_name == _PERSON_KEY:
        return UserConflict(f"person {person_id!r} is already linked to another account",
                            "person_taken")
    return UserConflict(f"username {username!r} is taken", "username_taken")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: Role
    scope_code: str
    person_id: str | None
    display_name: str
    disabled: bool

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role,
            "scope_code": self.scope_code,
            "person_id": self.person_id,
            "display_name": self.display_name,
            "disabled": self.disabled,
        }


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    kind: Literal["cookie", "bearer"]
    csrf_token: str | None
    expires_at: datetime


_USER_COLS = "u.id, u.username, u.role, u.scope_code, u.person_id, u.display_name, u.disabled"


def _user(row: dict[str, Any]) -> User:
    return User(
        id=row["id"], username=row["username"], role=row["role"], scope_code=row["scope_code"],
        person_id=row["person_id"], display_name=row["display_name"], disabled=row["disabled"],
    )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


class WeakPasswordError(UserError):
    """The password breaks the policy (:mod:`hub.passwords`); the message says how."""


def check_password_policy(password: str, username: str = "") -> None:
    """Every password set anywhere (API, create-admin, demo) passes here."""
    try:
        passwords.check(password, username)
    except passwords.WeakPassword as e:
        raise WeakPasswordError(str(e)) from None


def validate_user_fields(username: str, role: str, scope_code: str) -> None:
    if not USERNAME_RE.match(username):
        raise UserError("username: 1-64 of letters, digits and _ . @ -")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if not SCOPE_RE.match(scope_code):
        raise UserError("scope_code must be a grid code of 6, 9, 12, 14 or 16 digits")


def create_user(
    conn: psycopg.Connection,
    username: str,
    password: str,
    role: str,
    scope_code: str,
    person_id: str | None = None,
    display_name: str = "",
) -> User:
    """Create a user; raises :class:`UserError` for a bad field and
    :class:`UserConflict` for a taken username or a person linked to another account."""
    validate_user_fields(username, role, scope_code)
    check_password_policy(password, username)
    person_id = person_id or None
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "INSERT INTO users AS u (username, password_hash, role, scope_code, person_id,"
                " display_name) VALUES (%s, %s, %s, %s, %s, %s) RETURNING " + _USER_COLS,
                (username, hash_password(password), role, scope_code, person_id, display_name),
            )
            row = cur.fetchone()
    except psycopg.errors.UniqueViolation as e:
        raise _conflict(e, username, person_id) from None
    assert row is not None
    log.info("user created", extra={"user": username, "role": role, "scope": scope_code})
    return _user(row)


def get_user(conn: psycopg.Connection, user_id: int) -> User | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_USER_COLS} FROM users u WHERE u.id = %s", (user_id,))
        row = cur.fetchone()
    return _user(row) if row else None


def get_user_by_name(conn: psycopg.Connection, username: str) -> User | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_USER_COLS} FROM users u WHERE u.username = %s", (username,))
        row = cur.fetchone()
    return _user(row) if row else None


def list_users(conn: psycopg.Connection, scope_prefix: str = "") -> list[User]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_USER_COLS} FROM users u WHERE u.scope_code LIKE %s ORDER BY u.username",
            (scope_prefix + "%",),
        )
        return [_user(r) for r in cur.fetchall()]


def update_user(
    conn: psycopg.Connection,
    user_id: int,
    *,
    role: str | None = None,
    scope_code: str | None = None,
    person_id: str | None = None,
    display_name: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> User | None:
    """Change fields of a user. A new password, a new role, scope or person, or
    disabling the user ends all their sessions, so a demoted user loses access at
    once. ``person_id=""`` removes the link to a person; None leaves it."""
    cur_user = get_user(conn, user_id)
    if cur_user is None:
        return None
    validate_user_fields(cur_user.username, role or cur_user.role,
                         scope_code or cur_user.scope_code)
    sets: list[str] = []
    args: list[Any] = []
    for col, val in (("role", role), ("scope_code", scope_code), ("person_id", person_id),
                     ("display_name", display_name), ("disabled", disabled)):
        if val is not None:
            sets.append(f"{col} = %s")
            args.append(None if col == "person_id" and val == "" else val)
    if password is not None:
        check_password_policy(password, cur_user.username)
        sets += ["password_hash = %s", "password_changed_at = now()"]
        args.append(hash_password(password))
    if sets:
        try:
            # A savepoint, so a refused change leaves the caller's transaction usable.
            with conn.transaction():
                conn.execute(f"UPDATE users SET {', '.join(sets)} WHERE id = %s",
                             (*args, user_id))
        except psycopg.errors.UniqueViolation as e:
            raise _conflict(e, cur_user.username, person_id) from None
    new_person = (person_id or None) if person_id is not None else cur_user.person_id
    if password is not None or role or scope_code or disabled or (
            new_person != cur_user.person_id):
        revoke_sessions(conn, user_id)
    return get_user(conn, user_id)


def delete_user(conn: psycopg.Connection, user_id: int) -> bool:
    cur = conn.execute("DELETE FROM users WHERE id = %s", (user_id,))
    return cur.rowcount > 0


def verify_login(conn: psycopg.Connection, username: str, password: str) -> User | None:
    """The user when the password matches and the account is enabled, else None."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_USER_COLS}, u.password_hash FROM users u WHERE u.username = %s",
            (username,),
        )
        row = cur.fetchone()
    stored = row["password_hash"] if row else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"]:
        return None
    if _hasher.check_needs_rehash(stored):
        conn.execute("UPDATE users SET password_hash = %s WHERE id = %s",
                     (hash_password(password), row["id"]))
    return _user(row)


# --- sessions and tokens ---------------------------------------------------------


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def create_session(
    conn: psycopg.Connection,
    user: User,
    *,
    kind: Literal["cookie", "bearer"],
    now: datetime,
    ttl: timedelta,
    ip: str = "",
    user_agent: str = "",
) -> tuple[str, str | None]:
    """A new session; returns (token, csrf_token). Only the token's digest is stored."""
    token = ("hs_" if kind == "cookie" else "hb_") + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24) if kind == "cookie" else None
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, kind, csrf_token, created_at, expires_at,"
        " last_seen_at, ip, user_agent) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (token_digest(token), user.id, kind, csrf, now, now + ttl, now, ip[:64],
         user_agent[:256]),
    )
    return token, csrf


def lookup_session(conn: psycopg.Connection, token: str, now: datetime) -> Session | None:
    """The live session for a token, or None when unknown, expired or disabled."""
    if not token or len(token) > 128:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_USER_COLS}, s.kind, s.csrf_token, s.expires_at FROM sessions s"
            " JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = %s AND s.expires_at > %s AND NOT u.disabled",
            (token_digest(token), now),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return Session(user=_user(row), kind=row["kind"], csrf_token=row["csrf_token"],
                   expires_at=row["expires_at"])


def delete_session(conn: psycopg.Connection, token: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = %s", (token_digest(token),))


def revoke_sessions(conn: psycopg.Connection, user_id: int) -> int:
    return conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,)).rowcount


def purge_expired(conn: psycopg.Connection, now: datetime,
                  keep_attempts: timedelta = timedelta(days=1)) -> None:
    conn.execute("DELETE FROM sessions WHERE expires_at <= %s", (now,))
    conn.execute("DELETE FROM login_attempts WHERE at < %s", (now - keep_attempts,))


# --- login rate limiting ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginLimits:
    window: timedelta = timedelta(minutes=15)
    per_user: int = 5  # failures per username inside the window
    per_ip: int = 20  # failures per client address inside the window


def retry_after(failures: Sequence[datetime], limit: int, window: timedelta,
                now: datetime) -> float | None:
    """Seconds until another attempt is allowed, or None when one is allowed now.

    Pure: ``failures`` are the failure times inside the window, oldest first. Once
    ``limit`` failures lie inside the window, the next attempt waits until enough of
    them have aged out to bring the count under the limit."""
    recent = [t for t in failures if t > now - window]
    if len(recent) < limit:
        return None
    # The failure that must age out is the (len - limit + 1)-th oldest.
    key = recent[len(recent) - limit]
    return max(1.0, (key + window - now).total_seconds())


def login_blocked(conn: psycopg.Connection, username: str, ip: str, now: datetime,
                  limits: LoginLimits) -> float | None:
    """Seconds to wait when this username or this address has failed too often.

    Failures count since the user's last successful login, so an operator who mistypes
    and then gets in is not locked out later in the shift."""
    since = now - limits.window
    with conn.cursor() as cur:
        cur.execute(
            "SELECT at FROM login_attempts WHERE username = %s AND at > %s AND NOT ok"
            " AND at > COALESCE((SELECT max(at) FROM login_attempts"
            "   WHERE username = %s AND ok), '-infinity') ORDER BY at",
            (username, since, username),
        )
        user_fail = [r[0] for r in cur.fetchall()]
        cur.execute(
            "SELECT at FROM login_attempts WHERE ip = %s AND at > %s AND NOT ok ORDER BY at",
            (ip, since),
        )
        ip_fail = [r[0] for r in cur.fetchall()]
    waits = [w for w in (retry_after(user_fail, limits.per_user, limits.window, now),
                         retry_after(ip_fail, limits.per_ip, limits.window, now)) if w]
    return max(waits) if waits else None


# Advisory lock classes (the two-key form): one lock per username and one per client
# address. Every caller takes the username's first, so two attempts never wait on
# each other in opposite orders.
_LOCK_USER = 0x5C_0A01
_LOCK_IP = 0x5C_0A02


def reserve_attempt(conn: psycopg.Connection, username: str, ip: str, now: datetime,
                    limits: LoginLimits) -> tuple[int | None, float | None]:
    """Check the limits and count this attempt in one atomic step, before the
    password is verified: ``(attempt id, None)`` when it may go ahead, or
    ``(None, seconds to wait)``.

    The attempt is counted as a failure at once (and committed with the check, under
    the username's and the address's advisory locks), so of any number of parallel
    guesses at most the limit get to verify; :func:`attempt_succeeded` turns it into
    a success. Runs in its own transaction: call it on a connection with none open."""
    username, ip = username[:64], ip[:64]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_USER, username))
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_IP, ip))
        wait = login_blocked(conn, username, ip, now, limits)
        if wait is not None:
            return None, wait
        row = conn.execute("INSERT INTO login_attempts (username, ip, at, ok)"
                           " VALUES (%s, %s, %s, false) RETURNING id",
                           (username, ip, now)).fetchone()
    assert row is not None
    return int(row[0]), None


def attempt_succeeded(conn: psycopg.Connection, attempt_id: int) -> None:
    conn.execute("UPDATE login_attempts SET ok = true WHERE id = %s", (attempt_id,))


# --- demo users and the create-admin command ---------------------------------------

DEMO_PASSWORD_NOTE = (
    "Demo logins are created with random passwords printed at start-up; production"
    " has no default account: create the first admin with `hub create-admin`."
)


def demo_users(site: Site, fixed_password: str | None = None) -> list[tuple[str, str, str, str]]:
    """(username, password, role, scope_code) for the demo: an admin and an operator
    for the whole site, a viewer, and one login per grid worker in the site file
    (linked to that person). Passwords are random unless ``fixed_password`` is given
    (the browser tests pass one)."""
    root = site.grid.code

    def pw(username: str) -> str:
        if fixed_password:
            return fixed_password
        while True:  # a random draw can be all one kind of character, rarely
            candidate = secrets.token_urlsafe(9)
            try:
                passwords.check(candidate, username)
                return candidate
            except passwords.WeakPassword:
                continue

    out = [(name, pw(name), name, root) for name in ("admin", "operator", "viewer")]
    for person in site.people:
        for r in person.roles:
            if r.role == "grid_worker":
                out.append((person.id, pw(person.id), "grid_worker", r.unit))
                break
    return out


def create_demo_users(conn: psycopg.Connection, site: Site,
                      fixed_password: str | None = None) -> list[tuple[str, str, str, str]]:
    """Create (or reset the password of) the demo users; returns their logins."""
    logins = demo_users(site, fixed_password)
    names = {p.id: p.name for p in site.people}
    for username, password, role, scope in logins:
        existing = get_user_by_name(conn, username)
        person = username if username in names else None
        if existing:
            update_user(conn, existing.id, password=password, role=role, scope_code=scope)
        else:
            create_user(conn, username, password, role, scope, person_id=person,
                        display_name=names.get(username, username))
    return logins


def ensure_demo_users(conn: psycopg.Connection, site: Site,
                      fixed_password: str | None = None) -> list[tuple[str, str, str, str]]:
    """Same as :func:`create_demo_users` (the name the demo calls)."""
    return create_demo_users(conn, site, fixed_password)


def create_admin_main(argv: Sequence[str] | None = None) -> int:
    """`hub create-admin --username NAME [--scope CODE] [--database-url URL]`.

    Reads the password from HUB_ADMIN_PASSWORD or asks twice on the terminal; never
    invents one, so production has no default password. Without a scope the admin
    governs the whole site (the root of the site file's grid tree)."""
    import getpass
    import os

    from hub.config import ConfigError, Settings, load_site

    p = argparse.ArgumentParser(prog="hub create-admin",
                                description="create the first administrator")
    p.add_argument("name", nargs="?", help="username (or --username)")
    p.add_argument("--username")
    p.add_argument("--scope", default="", help="grid code the admin governs (default: all)")
    p.add_argument("--database-url", help="PostgreSQL URL (default: HUB_DATABASE_URL)")
    p.add_argument("--site", help="site file, for the default scope (default: HUB_SITE_FILE)")
    p.add_argument("--role", default="admin", choices=ROLES)
    args = p.parse_args(argv)
    username = args.username or args.name
    if not username:
        p.error("a username is needed")
    settings = Settings()
    url = args.database_url or settings.database_url
    if not url:
        print("hub create-admin: no database; pass --database-url or set HUB_DATABASE_URL",
              file=sys.stderr)
        return 2
    scope = args.scope
    if not scope:
        try:
            scope = load_site(args.site or settings.site_file).grid.code
        except ConfigError as e:
            print(f"hub create-admin: pass --scope, or a readable site file: {e}",
                  file=sys.stderr)
            return 2
    password = os.environ.get("HUB_ADMIN_PASSWORD")
    if not password:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            print("hub create-admin: the passwords differ", file=sys.stderr)
            return 2
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            user = create_user(conn, username, password, args.role, scope)
    except UserError as e:
        print(f"hub create-admin: {e}", file=sys.stderr)
        return 1
    print(f"created {user.role} {user.username} with scope {user.scope_code}")
    return 0
