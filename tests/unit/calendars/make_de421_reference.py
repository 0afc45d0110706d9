"""Generate ``de421_reference.json``: the lunisolar calendar computed from JPL DE421.

This is not a test and the test suite does not need it to run. It is how the committed reference
data was made, so that anyone can re-make it:

    pip install skyfield skyfield-data      # DE421 ships inside skyfield-data; no download
    python tests/unit/calendars/make_de421_reference.py

It finds every new moon and every principal solar term (sun's apparent longitude crossing a
multiple of 30°) in 1900-2052 with skyfield's search routines over the DE421 ephemeris and
UT1 from skyfield's built-in ΔT table, then applies the calendar rules (see
``cadenza.timers._lunar``) for UTC+7 (Vietnam) and UTC+8 (China). Each month start carries the
distance in seconds between its new moon and the nearest local midnight, so that the test can
tell a real disagreement from a photo finish that no approximate theory can call.
"""

from __future__ import annotations

import bisect
import json
import math
import warnings
from datetime import date
from pathlib import Path

_JDN_ORDINAL_OFFSET = 1721425


def main() -> None:
    warnings.simplefilter("ignore")
    from skyfield import almanac
    from skyfield.api import Loader
    from skyfield.framelib import ecliptic_frame
    from skyfield_data import get_skyfield_data_path

    load = Loader(get_skyfield_data_path(), expire=False)
    ts = load.timescale(builtin=True)
    eph = load("de421.bsp")
    t0, t1 = ts.utc(1900, 1, 1), ts.utc(2053, 1, 1)
    times, phases = almanac.find_discrete(t0, t1, almanac.moon_phases(eph))
    new_moons = [round(float(t.ut1), 6) for t, p in zip(times, phases, strict=True) if p == 0]
    earth, sun = eph["earth"], eph["sun"]

    def sector_at(t):
        _, lon, _ = earth.at(t).observe(sun).apparent().frame_latlon(ecliptic_frame)
        return (lon.degrees // 30).astype(int)

    sector_at.step_days = 10
    times, sectors = almanac.find_discrete(t0, t1, sector_at)
    terms = [(round(float(t.ut1), 6), int(s)) for t, s in zip(times, sectors, strict=True)]

    out = {
        "source": "JPL DE421 via skyfield; see make_de421_reference.py",
        "new_moons_ut1": new_moons[::5],
        "terms_ut1": terms[::5],
    }
    for tz in (7, 8):
        out[f"months_utc{tz}"] = _calendar(new_moons, terms, tz)
    path = Path(__file__).with_name("de421_reference.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")


def _calendar(new_moons: list[float], terms: list[tuple[float, int]], tz: int) -> list[list]:
    def local_day(jd: float) -> int:
        return math.floor(jd + 0.5 + tz / 24)

    def margin(jd: float) -> int:
        frac = (jd + 0.5 + tz / 24) % 1.0
        return round(min(frac, 1 - frac) * 86400)

    starts = [local_day(jd) for jd in new_moons]
    term_jds = [jd for jd, _ in terms]

    def sector_at_midnight(jdn: int) -> int:
        return terms[bisect.bisect_right(term_jds, jdn - 0.5 - tz / 24) - 1][1]

    def month11(year: int) -> int:
        solstice = next(
            jd
            for jd, s in terms
            if s == 9 and date.fromordinal(int(jd + 0.5) - _JDN_ORDINAL_OFFSET).year == year
        )
        day = local_day(solstice)
        return max(i for i, s in enumerate(starts) if s <= day)

    rows = []
    for year in range(1901, 2052):
        i0, i1 = month11(year - 1), month11(year)
        leap = None
        if i1 - i0 == 13:
            sec = [sector_at_midnight(starts[i]) for i in range(i0, i1 + 1)]
            leap = next(i for i in range(1, 13) if sec[i] == sec[i + 1])
        for i in range(i1 - i0):
            index = i if leap is None or i < leap else i - 1
            first = date.fromordinal(starts[i0 + i] - _JDN_ORDINAL_OFFSET)
            rows.append(
                [first.isoformat(), (10 + index) % 12 + 1, i == leap, margin(new_moons[i0 + i])]
            )
    return rows


if __name__ == "__main__":
    main()
