"""Which person of the site a login stands for, and who may say so.

An account's ``person_id`` is an identity claim: a login linked to a person may read,
accept and handle incidents dispatched to that person (even outside its own grid)
and the audit trail names that person as the actor. So the claim is checked where it
is made and again where it is used:

- where it is made (``check_account``, the user routes): the person exists in the
  site file, lies inside the acting admin's scope and inside the account's own
  scope, and no other account stands for them (the database enforces that last one
  too, with a unique index). The account's scope must be a unit of the site, inside
  the admin's; its role no higher than the admin's; and a username that is some
  person's id is reserved for that person's account, because the audit names an
  unlinked login by its username.
- where it is used (``bound_person``, on every authenticated request): a link that no
  longer holds — written before these checks, or the site file has moved the person
  — is dropped from the caller's principal, so it grants nothing.

A person "lies inside" a scope when every unit they hold a role in does; a person
with no role lies only inside the whole site.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException, status

log = logging.getLogger(__name__)

ROLE_RANK = {"viewer": 0, "grid_worker": 1, "operator": 2, "admin": 3}


def _people(site: Any) -> dict[str, Any]:
    return {p.id: p for p in site.people}


def _whole_site(site: Any, scope: str) -> bool:
    return scope in ("", site.grid.code)


def person_within(site: Any, person_id: str, scope: str) -> bool:
    """True when ``person_id`` is a person of ``site`` whose every role lies in the
    subtree ``scope`` ("" is the whole site)."""
    person = _people(site).get(person_id)
    if person is None:
        return False
    if not person.roles:
        return _whole_site(site, scope)
    return all(r.unit.startswith(scope) for r in person.roles)


def unit_codes(site: Any) -> set[str]:
    return {n.code for n, _ in site.grid.walk()}


def bound_person(site: Any, username: str, person_id: str | None,
                 scope_code: str) -> str | None:
    """The person this account may act as: its ``person_id`` when that still holds
    (a person of the site inside the account's scope), else None."""
    if not person_id or site is None:
        return person_id or None
    if person_within(site, person_id, scope_code):
        return person_id
    log.warning("login's person link is outside its scope; ignored",
                extra={"user": username, "person": person_id, "scope": scope_code})
    return None


def audit_name(site: Any, username: str, person_id: str | None) -> str:
    """The name the audit records for an account. An unlinked login whose username is
    a site person's id (a row from before the reservation) must not be taken for
    that person, so its name is marked as a login's."""
    if person_id:
        return person_id
    if site is not None and username in _people(site):
        return f"user:{username}"
    return username


def _refuse(code: int, label: str, detail: str) -> HTTPException:
    return HTTPException(code, detail, headers={"X-Error-Code": label})


def check_account(site: Any, me: Any, *, username: str, role: str, scope_code: str,
                  person_id: str | None, changing: set[str]) -> None:
    """Refuse (403/422) an account the admin ``me`` may not create or leave behind.

    ``role``, ``scope_code`` and ``person_id`` are the account's values after the
    change; ``changing`` names the fields the request sets (only those are held
    against the admin's own scope and role, so an admin may still edit, say, the
    display name of an account that others set up). Uniqueness of the person is the
    store's (409)."""
    if "role" in changing and ROLE_RANK.get(role, 99) > ROLE_RANK.get(me.role, -1):
        raise _refuse(status.HTTP_403_FORBIDDEN, "role_above_yours",
                      f"you ({me.role}) cannot give the role {role}")
    if "scope_code" in changing:
        if not me.sees(scope_code):
            raise _refuse(status.HTTP_403_FORBIDDEN, "scope_out_of_scope",
                          f"scope {scope_code} is outside your grid scope {me.scope_code}")
        if scope_code not in unit_codes(site):
            raise _refuse(422, "unknown_unit",
                          f"scope {scope_code} is not a grid unit of the site")
    people = _people(site)
    if "username" in changing and username in people and person_id != username:
        raise _refuse(422, "username_is_a_person",
                      f"username {username!r} is the id of a person of the site: link "
                      f"the account to that person (person_id) or choose another name")
    if not person_id or not ({"person_id", "scope_code"} & changing):
        return
    if person_id not in people:
        raise _refuse(422, "unknown_person",
                      f"person_id {person_id!r} is not a person of the site")
    if "person_id" in changing and not person_within(site, person_id, me.scope_code):
        raise _refuse(status.HTTP_403_FORBIDDEN, "person_out_of_scope",
                      f"person {person_id} is outside your grid scope {me.scope_code}")
    if not person_within(site, person_id, scope_code):
        raise _refuse(422, "person_out_of_scope",
                      f"person {person_id} has roles outside the account's scope "
                      f"{scope_code}")
