"""Short-lived usernames: ``rs-<masked-id>``, ``rs-<masked-id>-<suffix>`` on domain controllers.

The grammar is restated here (``is_passport_username``) rather than imported, so a change
to ``USERNAME_RE`` that lets more through fails these tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.usernames import InvalidUsername, masked_id, username_for, validate_username

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case
# A loaded test machine must not turn a slow example into a failure.
NO_DEADLINE = hypothesis_settings(deadline=None)
VALID = st.from_regex(r"\Ars-[a-z2-7]{8}(-[a-z2-7]{4})?\Z", fullmatch=True)


def is_passport_username(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split("-")
    if parts[0] != "rs" or len(parts) not in (2, 3):
        return False
    sizes = [8] if len(parts) == 2 else [8, 4]
    return all(len(part) == size and set(part) <= set(ALPHABET) for part, size in zip(parts[1:], sizes, strict=True))


# --- names made from a person's id ----------------------------------------------------


def test_the_username_is_stable_for_a_person() -> None:
    assert username_for(user_id=42, domain_controller=False) == username_for(user_id=42, domain_controller=False)


def test_people_get_different_usernames() -> None:
    names = {username_for(user_id=user_id, domain_controller=False) for user_id in range(1, 501)}
    assert len(names) == 500


def test_the_username_depends_on_the_key(settings: Any) -> None:
    settings.PASSPORT_USERNAME_KEY = "key-one"
    with_first_key = username_for(user_id=42, domain_controller=False)
    settings.PASSPORT_USERNAME_KEY = "key-two"
    with_second_key = username_for(user_id=42, domain_controller=False)
    assert with_first_key != with_second_key
    settings.PASSPORT_USERNAME_KEY = "key-one"
    assert username_for(user_id=42, domain_controller=False) == with_first_key


@pytest.mark.parametrize("user_id", [1, 2, 99, 2**31 - 1, 2**63 - 1])
def test_a_username_is_rs_and_eight_base32_characters(user_id: int) -> None:
    name = username_for(user_id=user_id, domain_controller=False)
    assert is_passport_username(name)
    assert name == f"rs-{masked_id(user_id)}"
    assert len(name) == 11


def test_on_a_domain_controller_the_username_gets_a_random_four_character_suffix() -> None:
    base = username_for(user_id=42, domain_controller=False)
    names = [username_for(user_id=42, domain_controller=True) for _ in range(30)]

    for name in names:
        assert is_passport_username(name)
        assert name.startswith(base + "-")
        assert len(name) == len(base) + 5 <= 20
    # 32**4 possible suffixes: thirty draws all alike would mean the suffix is not random.
    assert len({name.rsplit("-", 1)[1] for name in names}) > 1


@NO_DEADLINE
@given(user_id=st.integers(min_value=1, max_value=2**63 - 1), domain_controller=st.booleans())
def test_every_generated_username_is_valid_and_fits_windows(user_id: int, domain_controller: bool) -> None:
    name = username_for(user_id=user_id, domain_controller=domain_controller)
    assert is_passport_username(name)
    assert len(name) <= 20
    assert validate_username(name) == name


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "rs-abcdefgh;rm -rf /",
        "rs-ABCDEFGH",
        "rs-abcdefgh\n",
        "rs-abcdefgh\nrm -rf /",
        "\nrs-abcdefgh",
        " rs-abcdefgh",
        "rs-abcdefgh ",
        "rs-abcdefgh-abcdefghi",  # 21 characters
        "rs-abcdefgh-abcd-efgh",
        "rs-abcdefg",
        "rs-abcdefghi",
        "rs-abcdefgh-abc",
        "rs-abcdefgh-abcde",
        "rs-abcdefghabcd",
        "rs-abcdefgh-",
        "rs-abcdef01",  # 0 and 1 are not base32
        "rs-abcdefg'",
        "rs-$(id)abc",
        "rs-abcdefgh\x00",
        "rs-àbcdefgh",
        "rs-abcdefgh\u2028",
        "root",
        "administrator",
        "",
        "RS-abcdefgh",
        "rs_abcdefgh",
    ],
)
def test_validate_username_rejects_hostile_values(hostile: str) -> None:
    with pytest.raises(InvalidUsername):
        validate_username(hostile)


@pytest.mark.parametrize("not_text", [None, b"rs-abcdefgh", 42, ["rs-abcdefgh"]])
def test_validate_username_rejects_what_is_not_text(not_text: Any) -> None:
    with pytest.raises(InvalidUsername):
        validate_username(not_text)


@pytest.mark.parametrize("name", ["rs-abcdefgh", "rs-234567zz", "rs-abcdefgh-wxyz"])
def test_validate_username_returns_a_valid_name(name: str) -> None:
    assert validate_username(name) == name


@NO_DEADLINE
@given(st.text())
@example("rs-abcdefgh\n")
@example("rs-abcdefgh-abcd\n")
@example("rs-abcdefgh-abcdefghi")
def test_any_text_that_is_not_a_passport_username_is_rejected(value: str) -> None:
    if is_passport_username(value):
        assert validate_username(value) == value
    else:
        with pytest.raises(InvalidUsername):
            validate_username(value)


NEAR_MISS = st.one_of(st.text(), st.text(alphabet=ALPHABET + "-", min_size=1, max_size=6))


@NO_DEADLINE
@given(name=VALID, before=NEAR_MISS, after=NEAR_MISS)
@example(name="rs-abcdefgh-abcd", before="", after="e")
@example(name="rs-abcdefgh", before="", after="\n")
def test_a_valid_name_with_anything_around_it_is_rejected(name: str, before: str, after: str) -> None:
    value = before + name + after
    if is_passport_username(value):
        assert validate_username(value) == value
    else:
        with pytest.raises(InvalidUsername):
            validate_username(value)


@NO_DEADLINE
@given(name=VALID, index=st.integers(min_value=0), replacement=st.characters())
def test_a_valid_name_with_one_character_changed_is_rejected_unless_still_valid(
    name: str, index: int, replacement: str
) -> None:
    index %= len(name)
    value = name[:index] + replacement + name[index + 1 :]
    if is_passport_username(value):
        assert validate_username(value) == value
    else:
        with pytest.raises(InvalidUsername):
            validate_username(value)
