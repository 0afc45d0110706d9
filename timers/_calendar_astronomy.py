"""Astronomy for the lunisolar calendar: new moons, the sun's longitude and ΔT.

Algorithms from Jean Meeus, *Astronomical Algorithms* (2nd ed., 1998):

* chapter 49, the true new moon with its periodic and planetary terms;
* chapter 25 ("higher accuracy"), the apparent longitude of the sun from Earth's position in
  the truncated VSOP87 theory (Appendix III), with nutation and aberration;
* ΔT = TT - UT from the Espenak-Meeus polynomials (NASA, 2006).

Checked against the JPL DE421 ephemeris (see ``docs/calendars.md``): over 1900-2050 new moons
come within about 35 seconds and the sun's principal terms within about 40 seconds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

__all__ = [
    "delta_t_seconds",
    "jd_to_year",
    "new_moon_jde",
    "new_moon_utc",
    "sun_apparent_longitude",
    "tt_to_ut",
]

_DEG = math.pi / 180.0


def delta_t_seconds(year: float) -> float:
    """ΔT = TT - UT in seconds for a decimal year (Espenak-Meeus polynomials).

    Args:
        year: Decimal year, e.g. ``2024.5``.

    Returns:
        The difference in seconds; a few seconds of error in 1900-2025, an extrapolation after.
    """
    y = year
    if 1800 <= y < 1860:
        t = y - 1800
        return (
            13.72
            - 0.332447 * t
            + 0.0068612 * t**2
            + 0.0041116 * t**3
            - 0.00037436 * t**4
            + 0.0000121272 * t**5
            - 0.0000001699 * t**6
            + 0.000000000875 * t**7
        )
    if 1860 <= y < 1900:
        t = y - 1860
        return (
            7.62
            + 0.5737 * t
            - 0.251754 * t**2
            + 0.01680668 * t**3
            - 0.0004473624 * t**4
            + t**5 / 233174
        )
    if 1900 <= y < 1920:
        t = y - 1900
        return -2.79 + 1.494119 * t - 0.0598939 * t**2 + 0.0061966 * t**3 - 0.000197 * t**4
    if 1920 <= y < 1941:
        t = y - 1920
        return 21.20 + 0.84493 * t - 0.076100 * t**2 + 0.0020936 * t**3
    if 1941 <= y < 1961:
        t = y - 1950
        return 29.07 + 0.407 * t - t**2 / 233 + t**3 / 2547
    if 1961 <= y < 1986:
        t = y - 1975
        return 45.45 + 1.067 * t - t**2 / 260 - t**3 / 718
    if 1986 <= y < 2005:
        t = y - 2000
        return (
            63.86
            + 0.3345 * t
            - 0.060374 * t**2
            + 0.0017275 * t**3
            + 0.000651814 * t**4
            + 0.00002373599 * t**5
        )
    if 2005 <= y < 2050:
        t = y - 2000
        return 62.92 + 0.32217 * t + 0.005589 * t**2
    if 2050 <= y < 2150:
        return -20 + 32 * ((y - 1820) / 100) ** 2 - 0.5628 * (2150 - y)
    u = (y - 1820) / 100
    return -20 + 32 * u * u


def jd_to_year(jd: float) -> float:
    """Decimal year of a Julian Day (close enough for ΔT)."""
    return 2000.0 + (jd - 2451545.0) / 365.25


def new_moon_jde(k: int) -> float:
    """Julian Ephemeris Day (TT) of the true new moon number ``k`` (Meeus, chapter 49).

    Args:
        k: Lunation number; 0 is the new moon of 2000-01-06, negative numbers are earlier.

    Returns:
        The instant as a Julian Ephemeris Day.
    """
    t = k / 1236.85
    t2, t3, t4 = t * t, t**3, t**4
    jde = 2451550.09766 + 29.530588861 * k + 0.00015437 * t2 - 0.000000150 * t3 + 0.00000000073 * t4
    e = 1 - 0.002516 * t - 0.0000074 * t2
    m = (2.5534 + 29.10535670 * k - 0.0000014 * t2 - 0.00000011 * t3) * _DEG
    mp = (201.5643 + 385.81693528 * k + 0.0107582 * t2 + 0.00001238 * t3 - 0.000000058 * t4) * _DEG
    f = (160.7108 + 390.67050284 * k - 0.0016118 * t2 - 0.00000227 * t3 + 0.000000011 * t4) * _DEG
    om = (124.7746 - 1.56375588 * k + 0.0020672 * t2 + 0.00000215 * t3) * _DEG
    sin = math.sin
    jde += (
        -0.40720 * sin(mp)
        + 0.17241 * e * sin(m)
        + 0.01608 * sin(2 * mp)
        + 0.01039 * sin(2 * f)
        + 0.00739 * e * sin(mp - m)
        - 0.00514 * e * sin(mp + m)
        + 0.00208 * e * e * sin(2 * m)
        - 0.00111 * sin(mp - 2 * f)
        - 0.00057 * sin(mp + 2 * f)
        + 0.00056 * e * sin(2 * mp + m)
        - 0.00042 * sin(3 * mp)
        + 0.00042 * e * sin(m + 2 * f)
        + 0.00038 * e * sin(m - 2 * f)
        - 0.00024 * e * sin(2 * mp - m)
        - 0.00017 * sin(om)
        - 0.00007 * sin(mp + 2 * m)
        + 0.00004 * sin(2 * mp - 2 * f)
        + 0.00004 * sin(3 * m)
        + 0.00003 * sin(mp + m - 2 * f)
        + 0.00003 * sin(2 * mp + 2 * f)
        - 0.00003 * sin(mp + m + 2 * f)
        + 0.00003 * sin(mp - m + 2 * f)
        - 0.00002 * sin(mp - m - 2 * f)
        - 0.00002 * sin(3 * mp + m)
        + 0.00002 * sin(4 * mp)
    )
    # Planetary arguments (degrees): (amplitude, constant, rate per lunation).
    for amplitude, a0, rate in _PLANETARY_TERMS:
        jde += amplitude * sin((a0 + rate * k) * _DEG)
    jde += 0.000325 * sin((299.77 + 0.107408 * k - 0.009173 * t2) * _DEG)
    return jde


_PLANETARY_TERMS = (
    (0.000165, 251.88, 0.016321),
    (0.000164, 251.83, 26.651886),
    (0.000126, 349.42, 36.412478),
    (0.000110, 84.66, 18.206239),
    (0.000062, 141.74, 53.303771),
    (0.000060, 207.14, 2.453732),
    (0.000056, 154.84, 7.306860),
    (0.000047, 34.52, 27.261239),
    (0.000042, 207.19, 0.121824),
    (0.000040, 291.34, 1.844379),
    (0.000037, 161.72, 24.198154),
    (0.000035, 239.56, 25.513099),
    (0.000023, 331.55, 3.592518),
)


# Earth's heliocentric longitude L and radius R: VSOP87 (Bretagnon & Francou 1988) truncated
# as in Meeus, Appendix III. Each term is (A, B, C) for A·cos(B + C·τ), in 1e-8 rad (or AU),
# τ in Julian millennia from J2000.0. Checked against JPL DE421 in tests: the principal terms
# come within a minute of time.
_EARTH_L: tuple[tuple[tuple[float, float, float], ...], ...] = (
    (
        (175347046, 0, 0),
        (3341656, 4.6692568, 6283.0758500),
        (34894, 4.62610, 12566.15170),
        (3497, 2.7441, 5753.3849),
        (3418, 2.8289, 3.5231),
        (3136, 3.6277, 77713.7715),
        (2676, 4.4181, 7860.4194),
        (2343, 6.1352, 3930.2097),
        (1324, 0.7425, 11506.7698),
        (1273, 2.0371, 529.6910),
        (1199, 1.1096, 1577.3435),
        (990, 5.233, 5884.927),
        (902, 2.045, 26.298),
        (857, 3.508, 398.149),
        (780, 1.179, 5223.694),
        (753, 2.533, 5507.553),
        (505, 4.583, 18849.228),
        (492, 4.205, 775.523),
        (357, 2.920, 0.067),
        (317, 5.849, 11790.629),
        (284, 1.899, 796.298),
        (271, 0.315, 10977.079),
        (243, 0.345, 5486.778),
        (206, 4.806, 2544.314),
        (205, 1.869, 5573.143),
        (202, 2.458, 6069.777),
        (156, 0.833, 213.299),
        (132, 3.411, 2942.463),
        (126, 1.083, 20.775),
        (115, 0.645, 0.980),
        (103, 0.636, 4694.003),
        (102, 0.976, 15720.839),
        (102, 4.267, 7.114),
        (99, 6.21, 2146.17),
        (98, 0.68, 155.42),
        (86, 5.98, 161000.69),
        (85, 1.30, 6275.96),
        (85, 3.67, 71430.70),
        (80, 1.81, 17260.15),
        (79, 3.04, 12036.46),
        (75, 1.76, 5088.63),
        (74, 3.50, 3154.69),
        (74, 4.68, 801.82),
        (70, 0.83, 9437.76),
        (62, 3.98, 8827.39),
        (61, 1.82, 7084.90),
        (57, 2.78, 6286.60),
        (56, 4.39, 14143.50),
        (56, 3.47, 6279.55),
        (52, 0.19, 12139.55),
        (52, 1.33, 1748.02),
        (51, 0.28, 5856.48),
        (49, 0.49, 1194.45),
        (41, 5.37, 8429.24),
        (41, 2.40, 19651.05),
        (39, 6.17, 10447.39),
        (37, 6.04, 10213.29),
        (37, 2.57, 1059.38),
        (36, 1.71, 2352.87),
        (36, 1.78, 6812.77),
        (33, 0.59, 17789.85),
        (30, 0.44, 83996.85),
        (30, 2.74, 1349.87),
        (25, 3.16, 4690.48),
    ),
    (
        (628331966747, 0, 0),
        (206059, 2.678235, 6283.07585),
        (4303, 2.6351, 12566.1517),
        (425, 1.590, 3.523),
        (119, 5.796, 26.298),
        (109, 2.966, 1577.344),
        (93, 2.59, 18849.23),
        (72, 1.14, 529.69),
        (68, 1.87, 398.15),
        (67, 4.41, 5507.55),
        (59, 2.89, 5223.69),
        (56, 2.17, 155.42),
        (45, 0.40, 796.30),
        (36, 0.47, 775.52),
        (29, 2.65, 7.11),
        (21, 5.34, 0.98),
        (19, 1.85, 5486.78),
        (19, 4.97, 213.30),
        (17, 2.99, 6275.96),
        (16, 0.03, 2544.31),
        (16, 1.43, 2146.17),
        (15, 1.21, 10977.08),
        (12, 2.83, 1748.02),
        (12, 3.26, 5088.63),
        (12, 5.27, 1194.45),
        (12, 2.08, 4694.00),
        (11, 0.77, 553.57),
        (10, 1.30, 6286.60),
        (10, 4.24, 1349.87),
        (9, 2.70, 242.73),
        (9, 5.64, 951.72),
        (8, 5.30, 2352.87),
        (6, 2.65, 9437.76),
        (6, 4.67, 4690.48),
    ),
    (
        (52919, 0, 0),
        (8720, 1.0721, 6283.0758),
        (309, 0.867, 12566.152),
        (27, 0.05, 3.52),
        (16, 5.19, 26.30),
        (16, 3.68, 155.42),
        (10, 0.76, 18849.23),
        (9, 2.06, 77713.77),
        (7, 0.83, 775.52),
        (5, 4.66, 1577.34),
        (4, 1.03, 7.11),
        (4, 3.44, 5573.14),
        (3, 5.14, 796.30),
        (3, 6.05, 5507.55),
        (3, 1.19, 242.73),
        (3, 6.12, 529.69),
        (3, 0.31, 398.15),
        (3, 2.28, 553.57),
        (2, 4.38, 5223.69),
        (2, 3.75, 0.98),
    ),
    (
        (289, 5.844, 6283.076),
        (35, 0, 0),
        (17, 5.49, 12566.15),
        (3, 5.20, 155.42),
        (1, 4.72, 3.52),
        (1, 5.30, 18849.23),
        (1, 5.97, 242.73),
    ),
    (
        (114, 3.142, 0),
        (8, 4.13, 6283.08),
        (1, 3.84, 12566.15),
    ),
    ((1, 3.14, 0),),
)
_EARTH_R: tuple[tuple[tuple[float, float, float], ...], ...] = (
    (
        (100013989, 0, 0),
        (1670700, 3.0984635, 6283.0758500),
        (13956, 3.05525, 12566.15170),
        (3084, 5.1985, 77713.7715),
        (1628, 1.1739, 5753.3849),
        (1576, 2.8469, 7860.4194),
        (925, 5.453, 11506.770),
        (542, 4.564, 3930.210),
        (472, 3.661, 5884.927),
        (346, 0.964, 5507.553),
        (329, 5.900, 5223.694),
        (307, 0.299, 5573.143),
        (243, 4.273, 11790.629),
        (212, 5.847, 1577.344),
        (186, 5.022, 10977.079),
        (175, 3.012, 18849.228),
        (110, 5.055, 5486.778),
        (98, 0.89, 6069.78),
        (86, 5.69, 15720.84),
        (86, 1.27, 161000.69),
        (65, 0.27, 17260.15),
        (63, 0.92, 529.69),
        (57, 2.01, 83996.85),
        (56, 5.24, 71430.70),
        (49, 3.25, 2544.31),
        (47, 2.58, 775.52),
        (45, 5.54, 9437.76),
        (43, 6.01, 6275.96),
        (39, 5.36, 4694.00),
        (38, 2.39, 8827.39),
        (37, 0.83, 19651.05),
        (37, 4.90, 12139.55),
        (36, 1.67, 12036.46),
        (35, 1.84, 2942.46),
        (33, 0.24, 7084.90),
        (32, 0.18, 5088.63),
        (32, 1.78, 398.15),
        (28, 1.21, 6286.60),
        (28, 1.90, 6279.55),
        (26, 4.59, 10447.39),
    ),
    (
        (103019, 1.107490, 6283.075850),
        (1721, 1.0644, 12566.1517),
        (702, 3.142, 0),
        (32, 1.02, 18849.23),
        (31, 2.84, 5507.55),
        (25, 1.32, 5223.69),
        (18, 1.42, 1577.34),
        (10, 5.91, 10977.08),
        (9, 1.42, 6275.96),
        (9, 0.27, 5486.78),
    ),
    (
        (4359, 5.7846, 6283.0758),
        (124, 5.579, 12566.152),
        (12, 3.14, 0),
        (9, 3.63, 77713.77),
        (6, 1.87, 5573.14),
        (3, 5.47, 18849.23),
    ),
    (
        (145, 4.273, 6283.076),
        (7, 3.92, 12566.15),
    ),
    ((4, 2.56, 6283.08),),
)


def _vsop(series: tuple[tuple[tuple[float, float, float], ...], ...], tau: float) -> float:
    total = 0.0
    for power, terms in enumerate(series):
        total += sum(a * math.cos(b + c * tau) for a, b, c in terms) * tau**power
    return total / 1e8


def sun_apparent_longitude(jd_ut: float) -> float:
    """Apparent geocentric ecliptic longitude of the sun, in degrees ``[0, 360)``.

    Meeus chapter 25 ("higher accuracy"): Earth's position from the truncated VSOP87 series,
    turned geocentric, converted to the FK5 frame, corrected for nutation in longitude and for
    aberration. Against JPL DE421 the moments of the principal terms come out within a minute
    of time over 1900-2050.

    Args:
        jd_ut: The instant as a Julian Day in universal time.
    """
    jde = jd_ut + delta_t_seconds(jd_to_year(jd_ut)) / 86400.0
    tau = (jde - 2451545.0) / 365250.0
    t = tau * 10.0
    heliocentric = math.degrees(_vsop(_EARTH_L, tau))
    radius = _vsop(_EARTH_R, tau)
    theta = heliocentric + 180.0 - 0.09033 / 3600.0  # geocentric, FK5
    omega = (125.04452 - 1934.136261 * t) * _DEG
    sun_mean = (280.4665 + 36000.7698 * t) * _DEG
    moon_mean = (218.3165 + 481267.8813 * t) * _DEG
    nutation = (
        -17.20 * math.sin(omega)
        - 1.32 * math.sin(2 * sun_mean)
        - 0.23 * math.sin(2 * moon_mean)
        + 0.21 * math.sin(2 * omega)
    )
    aberration = -20.4898 / radius
    return (theta + (nutation + aberration) / 3600.0) % 360.0


def tt_to_ut(jde: float) -> float:
    """Convert a Julian Ephemeris Day (TT) to a Julian Day in universal time."""
    return jde - delta_t_seconds(jd_to_year(jde)) / 86400.0


def new_moon_utc(k: int) -> datetime:
    """The instant (UTC) of new moon number ``k`` (0 = 2000-01-06)."""
    jd_ut = tt_to_ut(new_moon_jde(k))
    return datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(days=jd_ut - 2451545.0)
