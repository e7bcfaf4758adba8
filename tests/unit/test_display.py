"""ruleadmin.display: times as ISO 8601 UTC + relative, weights as percent (round trip with the stored units)."""
import pytest

from ruleadmin.display import iso_utc, parse_percent, percent, relative, when


def test_times_are_iso_utc_with_a_relative_phrase():
    assert iso_utc(1_796_000_000) == "2026-11-30T00:53:20Z"
    assert iso_utc(0) == "" and relative(None) == ""
    assert relative(1000, now=1005) == "just now"
    assert relative(1000, now=1000 + 185) == "3 min ago"
    assert relative(1000 + 7200, now=1000) == "in 2 h"
    assert relative(0.5, now=86400 * 3) == "2 d ago"
    assert 'datetime="2026-11-30T00:53:20Z"' in when(1_796_000_000, now=1_796_000_060)
    assert "(1 min ago)" in when(1_796_000_000, now=1_796_000_060)


@pytest.mark.parametrize("units,text", [(0, "0%"), (1, "0.01%"), (10, "0.1%"), (1250, "12.5%"), (3333, "33.33%"),
                                        (10000, "100%")])
def test_percent_round_trips(units, text):
    assert percent(units) == text
    assert parse_percent(text) == units
    assert parse_percent(text.removesuffix("%")) == units


@pytest.mark.parametrize("bad,message", [("ten", "percentage"), ("100.5", "between"), ("-0.01", "between"),
                                         ("0.005", "two decimals"), ("NaN", "percentage"), (True, "percentage")])
def test_bad_percentages_name_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_percent(bad)
