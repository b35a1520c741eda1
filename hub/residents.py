"""A care subject's card for the people answering an incident about them: who they
are (name, age, living alone), where the flat is (building, unit, floor, room) and
whom to call. Pure: the site's subject and buildings and today's date in, a dict out."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from hub.config import Building, CareSubject

# The site file's address is building-unit-room ("3-2-501"); a room's hundreds are
# its floor, as flats in Chinese compounds are numbered.
_ADDRESS = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*-\s*(\d+)\s*$")


def flat_of(address: str) -> dict[str, Any]:
    """Building number, unit, floor and room of a building-unit-room address; only
    ``address`` when it is written some other way."""
    m = _ADDRESS.match(address)
    if not m:
        return {"address": address}
    b, u, room = m.groups()
    return {"address": address, "building_no": b, "unit": u, "room": room,
            "floor": int(room) // 100 if len(room) >= 3 else None}


def subject_card(s: CareSubject, buildings: list[Building], today: date) -> dict[str, Any]:
    flat = flat_of(s.address)
    building = next((b for b in buildings if b.id == s.building), None) if s.building else None
    if building is None and "building_no" in flat:
        # The demo's buildings are B<number> named <number>号楼.
        no = flat["building_no"]
        building = next((b for b in buildings if b.id == f"B{no}" or b.name == f"{no}号楼"),
                        None)
    age = None
    if s.birth_year is not None:
        age = today.year - s.birth_year
    return {
        "id": s.id, "name": s.name, "age": age, "lives_alone": s.lives_alone,
        "flat": {**flat, "building": building.name if building else None},
        "contacts": [{"name": c.name, "phone": c.phone, "relation": c.relation}
                     for c in s.emergency_contacts],
    }
