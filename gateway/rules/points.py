"""CCP points as exact decimals: 1.13 + 9.04 + 19.83 is 30, never 29.999999999999996."""

from decimal import Decimal

ZERO = Decimal(0)
HUNDREDTH = Decimal("0.01")  # the finest amount of points a record may hold


def to_points(value: int | float | str | Decimal) -> Decimal:
    """The exact decimal a JSON number or TOML value stands for (a float by its shortest text)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def in_hundredths(points: Decimal) -> bool:
    """Whether `points` is finite with no more than two decimal places (1.130 has two), read
    from its digits: arithmetic would round, or fail, past the context's 28 digits."""
    if not points.is_finite():
        return False
    _, digits, exponent = points.as_tuple()
    trailing_zeros = len(digits) - len(bytes(digits).rstrip(b"\0"))
    return int(exponent) + trailing_zeros >= int(HUNDREDTH.as_tuple().exponent)


def plain(points: Decimal) -> str:
    """`points` for a sentence: 30, 12.5, 29.99 (no exponent, no trailing zeros)."""
    text = f"{points:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def json_number(points: Decimal) -> int | float:
    """`points` as the JSON number of the same value: an int when whole, else the float whose
    shortest text is the decimal itself (exact for the fifteen digits points can hold)."""
    return int(points) if points == points.to_integral_value() else float(points)
