"""The built-in Vietnamese business calendar ``VN`` (alias ``vietnam``): rules and decree data.

Two kinds of content, kept apart on purpose:

* **Computed** (``VN_RULES``): the public holidays of the Labour Code 2019 (Bộ luật Lao động
  số 45/2019/QH14, art. 112, in force 1 January 2021), with Tết and Giỗ Tổ Hùng Vương computed
  from the lunar calendar (:mod:`cadenza.timers._lunar`), and substitute days off when a holiday
  falls on a weekend day (art. 111(3): the next working day).
* **Decree data** (``VN_DECREES``): for years in which the official schedule for public servants
  (decided by the Prime Minister, announced by the ministry in charge of labour) differs from
  what the rules compute. Each entry replaces the named rules for that year and lists every day
  off (substitute days included) and every make-up working Saturday. Only years whose schedule
  is known with confidence are listed; for every other year the calendar is computed.

The decreed schedule binds the public sector; private employers choose their Tết days and may
follow it or not (most do). See ``docs/calendars.md`` for the sources and the assumptions.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cadenza.timers._calendar_rules import BridgeDay, FixedDate, LunarDay, LunarSpan
from cadenza.timers._calendars import BusinessCalendar, YearOverride

__all__ = ["VN_DECREES", "VN_RULES", "build_vn_calendar"]

TET = "Tết Nguyên Đán (Lunar New Year)"
TET_SUBSTITUTE = "Tết Nguyên Đán - nghỉ bù (substitute day off)"
NATIONAL_DAY = "Quốc khánh (National Day)"

# ------------------------------------------------------------------------ computed rules

VN_RULES = (
    FixedDate(month=1, day=1, name="Tết Dương lịch (New Year's Day)"),
    # Labour Code 2019, art. 112(1)(b): five Tết days, fixed each year by the Prime Minister.
    # Default when no decree is known: the last day of the lunar year (29 or 30 tháng Chạp)
    # through lunar 1/4, i.e. one day before Tết and four from it.
    LunarSpan(start_month=12, start_day=-1, end_month=1, end_day=4, name=TET, key="tet"),
    # Public holiday since 2007.
    LunarDay(
        month=3, day=10, name="Giỗ Tổ Hùng Vương (Hùng Kings' Commemoration Day)", first_year=2007
    ),
    FixedDate(month=4, day=30, name="Ngày Chiến thắng (Reunification Day)"),
    FixedDate(month=5, day=1, name="Ngày Quốc tế Lao động (International Labour Day)"),
    FixedDate(month=9, day=2, name=NATIONAL_DAY, key="national_day"),
    # Since 2021: 2/9 "and one day before or after it"; the side that joins the weekend.
    BridgeDay(month=9, day=2, name=NATIONAL_DAY, first_year=2021, key="national_day"),
)

# -------------------------------------------------------------------------- decree data
#
# status "decree": the official public-sector schedule for that year. Every day off is listed
# (weekend days that are Tết days too, and the substitute days); "replaces" names the rule keys
# whose computed days (and computed substitutes) are dropped for that year.

VN_DECREES: tuple[dict[str, Any], ...] = (
    {
        "year": 2020,
        "status": "decree",
        "source": "Public-sector Tết Canh Tý schedule: 23-29 January 2020 (29 Chạp - mùng 5)",
        "replaces": ["tet"],
        "holidays": [
            ("2020-01-23", TET),  # 29 tháng Chạp
            ("2020-01-24", TET),  # 30 tháng Chạp
            ("2020-01-25", TET),  # mùng 1 (Saturday)
            ("2020-01-26", TET),  # mùng 2 (Sunday)
            ("2020-01-27", TET),  # mùng 3
            ("2020-01-28", TET_SUBSTITUTE),
            ("2020-01-29", TET_SUBSTITUTE),
        ],
        "makeup_workdays": [],
    },
    {
        "year": 2021,
        "status": "decree",
        "source": "Public-sector Tết Tân Sửu schedule: 10-16 February 2021 (29 Chạp - mùng 5)",
        "replaces": ["tet"],
        "holidays": [
            ("2021-02-10", TET),  # 29 tháng Chạp
            ("2021-02-11", TET),  # 30 tháng Chạp
            ("2021-02-12", TET),  # mùng 1
            ("2021-02-13", TET),  # mùng 2 (Saturday)
            ("2021-02-14", TET),  # mùng 3 (Sunday)
            ("2021-02-15", TET_SUBSTITUTE),
            ("2021-02-16", TET_SUBSTITUTE),
        ],
        "makeup_workdays": [],
    },
    {
        "year": 2023,
        "status": "decree",
        "source": "Public-sector Tết Quý Mão schedule: 20-26 January 2023 (29 Chạp - mùng 5)",
        "replaces": ["tet"],
        "holidays": [
            ("2023-01-20", TET),  # 29 tháng Chạp
            ("2023-01-21", TET),  # 30 tháng Chạp (Saturday)
            ("2023-01-22", TET),  # mùng 1 (Sunday)
            ("2023-01-23", TET),  # mùng 2
            ("2023-01-24", TET),  # mùng 3
            ("2023-01-25", TET_SUBSTITUTE),
            ("2023-01-26", TET_SUBSTITUTE),
        ],
        "makeup_workdays": [],
    },
    {
        "year": 2024,
        "status": "decree",
        "source": "Public-sector Tết Giáp Thìn schedule: 8-14 February 2024 (29 Chạp - mùng 5)",
        "replaces": ["tet"],
        "holidays": [
            ("2024-02-08", TET),  # 29 tháng Chạp
            ("2024-02-09", TET),  # 30 tháng Chạp
            ("2024-02-10", TET),  # mùng 1 (Saturday)
            ("2024-02-11", TET),  # mùng 2 (Sunday)
            ("2024-02-12", TET),  # mùng 3
            ("2024-02-13", TET_SUBSTITUTE),
            ("2024-02-14", TET_SUBSTITUTE),
        ],
        "makeup_workdays": [],
    },
    {
        "year": 2024,
        "status": "decree",
        "source": "Government Office dispatch 2450/VPCP-KGVX (2024): work Saturday 4 May, "
        "off Monday 29 April; 27 April - 1 May off",
        "replaces": [],
        "holidays": [("2024-04-29", "Nghỉ hoán đổi (swapped day off, worked on 4 May)")],
        "makeup_workdays": [("2024-05-04", "Làm bù cho thứ Hai 29/4 (make-up working day)")],
    },
    {
        "year": 2025,
        "status": "decree",
        "source": "Public-sector Tết Ất Tỵ schedule: 25 January - 2 February 2025 "
        "(Tết days 28 Chạp - mùng 3), no make-up day",
        "replaces": ["tet"],
        "holidays": [
            ("2025-01-27", TET),  # 28 tháng Chạp
            ("2025-01-28", TET),  # 29 tháng Chạp, the last day of the year
            ("2025-01-29", TET),  # mùng 1
            ("2025-01-30", TET),  # mùng 2
            ("2025-01-31", TET),  # mùng 3
        ],
        "makeup_workdays": [],
    },
    {
        "year": 2025,
        "status": "decree",
        "source": "Public-sector 30/4-1/5 schedule 2025: work Saturday 26 April, off Friday "
        "2 May; 30 April - 4 May off",
        "replaces": [],
        "holidays": [("2025-05-02", "Nghỉ hoán đổi (swapped day off, worked on 26 April)")],
        "makeup_workdays": [("2025-04-26", "Làm bù cho thứ Sáu 2/5 (make-up working day)")],
    },
)


def _overrides() -> list[YearOverride]:
    return [
        YearOverride(
            year=entry["year"],
            replaces=frozenset(entry["replaces"]),
            holidays=tuple((date.fromisoformat(d), n) for d, n in entry["holidays"]),
            makeup_workdays=tuple((date.fromisoformat(d), n) for d, n in entry["makeup_workdays"]),
            source=f"{entry['status']}: {entry['source']}",
        )
        for entry in VN_DECREES
    ]


def build_vn_calendar() -> BusinessCalendar:
    """The ``VN`` calendar: Labour Code 2019 holidays, computed, with known decree data."""
    return BusinessCalendar(
        "VN",
        weekend=("sat", "sun"),
        rules=VN_RULES,
        overrides=_overrides(),
        substitute="next_workday",
        substitute_label="{name} - nghỉ bù (substitute day off)",
        description="Vietnam public holidays (Labour Code 2019, art. 112), Asia/Ho_Chi_Minh",
    )
