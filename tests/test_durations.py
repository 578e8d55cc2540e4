from __future__ import annotations

import pytest

from corral.durations import FOREVER, format_go_duration, parse_go_duration, parse_keep_alive


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("24h", 86400), ("300ms", 0.3), ("0", 0), ("1.5h", 5400),
     ("2h45m30s", 9930), ("-1m", -60), ("+10s", 10), ("1us", 1e-6), ("1µs", 1e-6)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("10", 'time: missing unit in duration "10"'),
    ("", 'time: invalid duration ""'),
    ("5 minutes", 'time: unknown unit " minutes" in duration "5 minutes"'),
    ("m", 'time: invalid duration "m"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
])
def test_bad_go_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_go_duration(text)
    assert str(error.value) == message


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300), ("600", 600), (42.5, 42.5), (0, 0), (-1, FOREVER), ("-1m", FOREVER), ("0", 0), (" 1h ", 3600),
])
def test_keep_alive(value: object, seconds: float) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", [True, None, [], {}, "abc", "10x"])
def test_bad_keep_alive(value: object) -> None:
    with pytest.raises(ValueError):
        parse_keep_alive(value)


@pytest.mark.parametrize(("seconds", "text"), [
    (300, "5m0s"), (5400, "1h30m0s"), (0.3, "300ms"), (0, "0s"), (FOREVER, "-1"), (59, "59s"), (86400, "24h0m0s"),
])
def test_format(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize(("text", "seconds"), [
    ("9223372036854775807ns", 9223372036854775807e-9), ("0" * 5000 + "1s", 1), ("1.5" + "9" * 5000 + "s", 1.6),
    (".5s", 0.5), ("1.s", 1), ("2562047h", 2562047 * 3600),
])
def test_go_limits_are_kept(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "9223372036854775808ns", "2562048h", "-9223372036854775809ns", "1" * 20 + "s", "1" * 20000 + "x",
    ".s", "-.s",
])
def test_overflowing_durations_are_invalid_as_in_go(text: str) -> None:
    """Go's ParseDuration refuses a number past int64 nanoseconds before it looks at the unit."""
    with pytest.raises(ValueError, match="^time: invalid duration"):
        parse_go_duration(text)


def test_messages_quote_long_values_shortly() -> None:
    with pytest.raises(ValueError) as error:
        parse_go_duration("5" + "y" * 100_000)
    assert str(error.value) == f'time: unknown unit "{"y" * 64}..." in duration "5{"y" * 63}..."'
