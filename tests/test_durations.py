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
