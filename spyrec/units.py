"""Parsing of the command line's time quantities: intervals, rates and durations."""

import re

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ]*)\s*$")


def parse_time(text, default_unit):
    """``"100us"`` -> 100_000 (ns).  A bare number takes ``default_unit``."""
    match = _QUANTITY.match(str(text).lower())
    if not match:
        raise ValueError("%r is not a time (examples: 100us, 1ms, 10ms, 2s)" % text)
    number, unit = match.groups()
    unit = unit or default_unit
    if unit not in _UNITS_NS:
        raise ValueError("unknown time unit %r in %r (use ns, us, ms, s, m or h)" % (unit, text))
    value = int(round(float(number) * _UNITS_NS[unit]))
    if value <= 0:
        raise ValueError("%r must be greater than zero" % text)
    return value


def rate_to_interval_ns(rate_hz):
    """A sampling rate in Hz as an interval in ns."""
    if rate_hz <= 0:
        raise ValueError("the rate must be greater than zero")
    return max(1, int(round(1e9 / rate_hz)))
