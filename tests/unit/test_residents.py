"""The resident card: the flat from a building-unit-room address, the building found
by id or number, the age on a given day, contacts in calling order."""

from __future__ import annotations

from datetime import date

from hub.config import Building, CareSubject, Contact
from hub.residents import flat_of, subject_card

B3 = Building(id="B3", name="3号楼", grid="1101050010020103",
              polygon=[(0.1, 0.1), (0.2, 0.1), (0.2, 0.2)])
B9 = Building(id="north", name="北楼", grid="1101050010020103",
              polygon=[(0.1, 0.1), (0.2, 0.1), (0.2, 0.2)])


def subject(**kw: object) -> CareSubject:
    base: dict[str, object] = dict(
        id="s01", name="王秀英", address="3-2-501", grid="1101050010020103", consent=True,
        emergency_contacts=[Contact(name="儿子", phone="136 3017 8607", relation="子女"),
                            Contact(name="邻居", phone="13621752265", relation="邻居")])
    return CareSubject(**{**base, **kw})


def test_flat_from_address() -> None:
    assert flat_of("3-2-501") == {"address": "3-2-501", "building_no": "3", "unit": "2",
                                  "room": "501", "floor": 5}
    assert flat_of(" 12 - 1 - 1203 ")["floor"] == 12
    assert flat_of("3-2-01")["floor"] is None  # no hundreds: no floor to tell
    assert flat_of("幸福里 5 号") == {"address": "幸福里 5 号"}


def test_card_age_building_and_contacts() -> None:
    card = subject_card(subject(birth_year=1942), [B3], date(2026, 3, 2))
    assert card["age"] == 84 and card["lives_alone"] is True
    assert card["flat"]["building"] == "3号楼"
    assert [c["name"] for c in card["contacts"]] == ["儿子", "邻居"]
    assert card["contacts"][0]["phone"] == "136 3017 8607"
    # An explicit building wins over the address's number; unknown age stays unknown.
    card = subject_card(subject(building="north", lives_alone=False), [B3, B9],
                        date(2026, 3, 2))
    assert card["flat"]["building"] == "北楼" and card["age"] is None
    assert card["lives_alone"] is False
    assert subject_card(subject(address="7-1-101"), [B3], date(2026, 3, 2))["flat"][
        "building"] is None
