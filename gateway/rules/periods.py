"""Date arithmetic of a certification period: anniversary-month ends, year shifts, CCP cycles."""

from datetime import date, timedelta

ONE_DAY = timedelta(days=1)
#: The days the rules compute with. Their arithmetic reaches decades beyond a date (cycle ends,
#: lapses, exam-only years), which must stay within what a date holds (years 1 to 9999); a date a
#: client sends outside this range is refused as malformed.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2999, 12, 31)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def month_end(year: int, month: int) -> date:
    """The last day of `month` in `year`."""
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return date(year, 2, 29)
    return date(year, month, _MONTH_DAYS[month - 1])


def first_membership_year(period_start: date) -> int:
    """FEE-DUE, FEE-YEAR-RANGE: the first year whose fee is payable; the certification itself
    covers up to the anniversary month of that year (our decision, docs/rules.md)."""
    return period_start.year + 1


def add_years(day: date, years: int) -> date:
    """`day` moved by whole years; 29 February becomes 28 February in a common year ("10 years
    after the lapse", "3 years before the recertification")."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def month_end_after(day: date, years: int) -> date:
    """The last day of `day`'s month `years` later.

    decision: "P + 3 years" and "3 years after a cycle's end" move a month's last day to the same
    month's last day, so 2021-02-28 + 3 years is 2024-02-29, the 2024 fee's due date.
    """
    return month_end(day.year + years, day.month)


def parse_day(text: str) -> date:
    """A day written YYYY-MM-DD, the only form clients send; ValueError for any other (Python
    also reads 20250501 and 2025-W18-4)."""
    if len(text) != 10 or not text.isascii() or text[4] != "-" or text[7] != "-":
        raise ValueError(f"not a YYYY-MM-DD day: {text!r}")
    return date.fromisoformat(text)


def cycle_end(period_start: date, index: int, cycle_years: int) -> date:
    """Last day of CCP cycle `index` (0 = first) of the period starting on `period_start`.

    CCP-CYCLE: a cycle ends on the last day of the anniversary month `cycle_years` after it began.
    """
    return month_end(period_start.year + cycle_years * (index + 1), period_start.month)


def cycle_start(period_start: date, index: int, cycle_years: int) -> date:
    """First day of CCP cycle `index`: the period start, then the day after the previous end."""
    if index == 0:
        return period_start
    return cycle_end(period_start, index - 1, cycle_years) + ONE_DAY


def cycle_index(period_start: date, day: date, cycle_years: int) -> int:
    """Index of the CCP cycle that holds `day` (on or after `period_start`)."""
    months_past_first_end = (
        (day.year - period_start.year - cycle_years) * 12 + day.month - period_start.month
    )
    if months_past_first_end <= 0:
        return 0
    cycle_months = 12 * cycle_years
    return (months_past_first_end + cycle_months - 1) // cycle_months
