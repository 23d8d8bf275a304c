"""The SSM agent's output rules as devcloud applies them, from vectors worked out by hand."""

from __future__ import annotations

import pytest

from devcloud.runcommand import output
from devcloud.runcommand.output import ERROR_TITLE, ERROR_TRUNCATED, OUTPUT_TRUNCATED, string_prefix, truncate_output

SUFFIX = b"--output truncated--"


@pytest.mark.parametrize(
    "size, kept",
    [
        (0, b""),
        (23_999, b"x" * 23_999),  # fewer bytes than the limit: untouched
        (24_000, b"x" * 23_980 + SUFFIX),  # the limit itself is cut already
        (30_000, b"x" * 23_980 + SUFFIX),
    ],
)
def test_string_prefix_keeps_fewer_than_the_limit_and_marks_the_rest(size: int, kept: bytes) -> None:
    assert string_prefix(b"x" * size, 24_000, SUFFIX) == kept


def test_string_prefix_shorter_than_its_suffix_is_the_suffixs_start() -> None:
    assert string_prefix(b"x" * 30, 10, SUFFIX) == b"--output t"


def test_the_markers_are_the_agents() -> None:
    assert (len(ERROR_TITLE), len(OUTPUT_TRUNCATED), len(ERROR_TRUNCATED)) == (24, 23, 23)


@pytest.mark.parametrize(
    "stdout, stderr, expected",
    [
        # Fits: output, and the error title only when there is standard error.
        (b"a" * 100, b"", b"a" * 100),
        (b"a" * 2_499, b"", b"a" * 2_499),
        (b"a" * 100, b"boom\n", b"a" * 100 + ERROR_TITLE + b"boom\n"),
        (b"a" * 2_000, b"e" * 475, b"a" * 2_000 + ERROR_TITLE + b"e" * 475),  # 2,475 < 2,476
        # Exactly the space left is already too much: the output is cut, the error kept.
        (b"a" * 2_500, b"", b"a" * 2_477 + OUTPUT_TRUNCATED),
        (b"a" * 2_000, b"e" * 476, b"a" * 1_977 + OUTPUT_TRUNCATED + ERROR_TITLE + b"e" * 476),
        (b"a" * 3_000, b"boom\n", b"a" * 2_448 + OUTPUT_TRUNCATED + ERROR_TITLE + b"boom\n"),
        # Short output, long error: the error is cut.
        (b"a" * 10, b"e" * 3_000, b"a" * 10 + ERROR_TITLE + b"e" * 2_443 + ERROR_TRUNCATED),
        (b"", b"e" * 3_000, ERROR_TITLE + b"e" * 2_453 + ERROR_TRUNCATED),
        # Both long: each keeps half of what is left.
        (b"a" * 3_000, b"e" * 3_000, b"a" * 1_215 + OUTPUT_TRUNCATED + ERROR_TITLE + b"e" * 1_215 + ERROR_TRUNCATED),
    ],
)
def test_plugin_output_shares_2500_bytes_keeping_standard_error(stdout: bytes, stderr: bytes, expected: bytes) -> None:
    got = truncate_output(stdout, stderr)
    assert got == expected
    assert len(got) <= 2_500


def test_a_cut_through_a_character_leaves_one_replacement_per_stray_byte() -> None:
    euro = "\u20ac"  # three bytes in UTF-8: 23,980 bytes end one byte into the 7,994th
    content = output.standard_output_content(euro * 9_000)
    assert content == euro * 7_993 + "\ufffd" + "--output truncated--"
    # Bytes that were never UTF-8 come back as U+FFFD too, one each.
    assert output.standard_output_content(b"ok\xff\xfe".decode("utf-8", "surrogateescape")) == "ok\ufffd\ufffd"


def test_standard_error_content_is_its_first_8000_characters() -> None:
    assert output.standard_error_content("e" * 7_999) == "e" * 7_999
    assert output.standard_error_content("e" * 10_000) == "e" * 8_000
