"""The certification policy: the credential table and the numbers of docs/rules.md, from TOML."""

import tomllib
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .points import in_hundredths, to_points

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.toml")

#: The range each whole number of `[rules]` must be in: what a certifying body could need, far
#: inside what the rules' date arithmetic can take.
RULE_BOUNDS = {
    "cycle_years": (1, 10),
    "fee_lapse_years": (1, 50),
    "fee_years_ahead": (1, 10),
    "ccp_lapse_years": (1, 50),
    "exam_only_years": (1, 50),
    "recert_ccp_window_years": (1, 10),
    "future_tolerance_minutes": (0, 1440),  # a day
}
#: The most CCP points a credential may need in a cycle, or a category cap may count.
MOST_POINTS = Decimal(1000)


@dataclass(frozen=True)
class CredentialPolicy:
    """One row of the credential table."""

    code: str
    name: str
    points_per_cycle: Decimal
    eligibility_criteria: str
    category_caps: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """The credential table, the CCP categories and the numbers the rules use."""

    credentials: dict[str, CredentialPolicy]
    categories: tuple[str, ...]
    cycle_years: int
    fee_lapse_years: int
    fee_years_ahead: int
    ccp_lapse_years: int
    exam_only_years: int
    recert_ccp_window_years: int
    grandfather_cutoff: date
    employment_cutoff: date
    future_tolerance: timedelta


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a policy file (None: the packaged default); ValueError names what is wrong in it."""
    source = DEFAULT_POLICY_FILE if path is None else Path(path)
    try:
        with source.open("rb") as file:
            data = tomllib.load(file, parse_float=Decimal)  # exact, as points are
    except OSError as exc:
        raise ValueError(f"policy file {source}: cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"policy file {source}: not valid TOML: {exc}") from exc
    return _parse(_Table(data, source))


class _Table:
    """A TOML table whose reads check type and presence, with errors naming file and key."""

    def __init__(self, data: dict[str, Any], source: Path, name: str = "") -> None:
        self.data = data
        self.source = source
        self.name = name

    def fail(self, problem: str) -> ValueError:
        where = f" [{self.name}]" if self.name else ""
        return ValueError(f"policy file {self.source}{where}: {problem}")

    def only(self, *keys: str) -> None:
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise self.fail(f"unknown key(s) {', '.join(unknown)}")

    def get(self, key: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        if key not in self.data:
            if required:
                raise self.fail(f"'{key}' is missing")
            return None
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.fail(f"'{key}' has the wrong type ({type(value).__name__})")
        return value

    def whole(self, key: str) -> int:
        """A whole number of `[rules]`, within its RULE_BOUNDS."""
        value = self.get(key, int)
        least, most = RULE_BOUNDS[key]
        if not least <= value <= most:
            raise self.fail(f"'{key}' must be from {least} to {most}, not {value}")
        return value

    def points(self, key: str, *, zero: bool) -> Decimal:
        """A number of CCP points up to MOST_POINTS (0 only when `zero`): an integer or a decimal
        with at most two places."""
        value = to_points(self.get(key, (int, Decimal)))
        if not in_hundredths(value):
            raise self.fail(f"'{key}' must be a number of points with at most 2 decimal places")
        if value > MOST_POINTS or value < 0 or (value == 0 and not zero):
            least = "from 0" if zero else "above 0 and"
            raise self.fail(f"'{key}' must be {least} up to {MOST_POINTS}, not {value}")
        return value

    def day(self, key: str) -> date:
        value = self.get(key, date)
        if type(value) is not date:
            raise self.fail(f"'{key}' must be a plain date such as 2006-01-01")
        return value

    def text(self, key: str) -> str:
        value = self.get(key, str)
        if not value.strip():
            raise self.fail(f"'{key}' is empty")
        return value

    def table(self, key: str, required: bool = True) -> "_Table | None":
        value = self.get(key, dict, required)
        if value is None:
            return None
        return _Table(value, self.source, f"{self.name}.{key}" if self.name else key)


def _parse(top: _Table) -> Policy:
    top.only("categories", "rules", "credentials")
    categories = top.get("categories", list)
    if not categories or not all(isinstance(c, str) and c.strip() for c in categories):
        raise top.fail("'categories' must be a non-empty list of names")
    if len(set(categories)) != len(categories):
        raise top.fail("'categories' lists a name twice")
    rules = top.table("rules")
    rules.only(
        "cycle_years",
        "fee_lapse_years",
        "fee_years_ahead",
        "ccp_lapse_years",
        "exam_only_years",
        "recert_ccp_window_years",
        "grandfather_cutoff",
        "employment_cutoff",
        "future_tolerance_minutes",
    )
    table = top.table("credentials")
    if not table.data:
        raise table.fail("no credential is listed")
    credentials = {code: _credential(code, table.table(code), categories) for code in table.data}
    return Policy(
        credentials=credentials,
        categories=tuple(categories),
        cycle_years=rules.whole("cycle_years"),
        fee_lapse_years=rules.whole("fee_lapse_years"),
        fee_years_ahead=rules.whole("fee_years_ahead"),
        ccp_lapse_years=rules.whole("ccp_lapse_years"),
        exam_only_years=rules.whole("exam_only_years"),
        recert_ccp_window_years=rules.whole("recert_ccp_window_years"),
        grandfather_cutoff=rules.day("grandfather_cutoff"),
        employment_cutoff=rules.day("employment_cutoff"),
        future_tolerance=timedelta(minutes=rules.whole("future_tolerance_minutes")),
    )


def _credential(code: str, row: _Table, categories: list[str]) -> CredentialPolicy:
    row.only("name", "points_per_cycle", "eligibility_criteria", "category_caps")
    points = row.points("points_per_cycle", zero=True)
    caps: dict[str, Decimal] = {}
    cap_table = row.table("category_caps", required=False)
    if cap_table is not None:
        for category in cap_table.data:
            if category not in categories:
                raise cap_table.fail(f"'{category}' is not one of the categories")
            caps[category] = cap_table.points(category, zero=False)
    return CredentialPolicy(
        code=code,
        name=row.text("name"),
        points_per_cycle=points,
        eligibility_criteria=row.text("eligibility_criteria"),
        category_caps=caps,
    )
