"""Made-up but plausible values for the demo data: names, amounts, ids, versions.

    slots = Slots(random.Random(7))
    slots.fill("Invoice {invoice} for {amount} was charged twice.")

A `Slots` keeps each value once drawn, so a template that names `{invoice}` twice, or two
sentences of one ticket, talk about the same invoice. Every value comes from the `Random`
handed in, so the same seed gives the same text.
"""

from __future__ import annotations

import random
from collections import ChainMap
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import TypeVar

T = TypeVar("T")

FIRST_NAMES = (
    "Aisha",
    "Ben",
    "Carla",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Lars",
    "Maya",
    "Nikhil",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Priya",
    "Tom",
    "Anna",
    "Mateo",
)
LAST_NAMES = (
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Schmidt",
    "Haddad",
    "Novak",
    "Silva",
    "O'Brien",
    "Kowalski",
    "Nguyen",
    "Rossi",
    "Patel",
    "Jensen",
    "Garcia",
    "Fischer",
    "Ivanova",
    "Mensah",
    "Kim",
    "Dubois",
    "Costa",
    "Berg",
    "Walsh",
    "Yilmaz",
)
COMPANIES = (
    "Northwind Logistics",
    "Bluefin Analytics",
    "Harbor & Pine",
    "Quarry Labs",
    "Tidewater Health",
    "Lumen Retail",
    "Copperleaf Studio",
    "Vantage Freight",
    "Orchard Foods",
    "Meridian Legal",
    "Brightpath Schools",
    "Kestrel Robotics",
    "Saltmarsh Media",
    "Granite Insurance",
    "Fernhill Clinics",
    "Atlas Print Co.",
    "Redwood Ventures",
    "Pioneer Dental",
)
TEAMS = ("Platform", "Payments", "Growth", "Support Operations", "Data", "Mobile", "Security")
CARDS = ("Visa", "Mastercard", "Amex")
PLANS = ("Starter", "Team", "Business", "Enterprise")
FEATURES = (
    "scheduled exports",
    "the reporting dashboard",
    "bulk import",
    "the mobile app",
    "webhooks",
    "single sign-on",
    "the audit log",
    "shared workspaces",
    "the REST API",
    "the CSV connector",
    "saved filters",
    "two-factor authentication",
    "usage alerts",
)
BROWSERS = (
    "Chrome 131 on Windows 11",
    "Edge 131 on Windows 11",
    "Safari 18.1 on macOS 15.1",
    "Chrome 131 on macOS 15.1",
    "Firefox 133 on Ubuntu 24.04",
    "Chrome 130 on ChromeOS",
)
MOBILE_SYSTEMS = ("iOS 18.1", "iPadOS 18.1", "Android 15", "Android 14")
ENDPOINTS = (
    "/v2/exports",
    "/v2/orders",
    "/v1/customers",
    "/v2/reports/run",
    "/v1/webhooks",
    "/v2/invoices",
    "/v1/auth/token",
    "/v2/files/upload",
)
SERVICES = (
    "the export service",
    "the auth gateway",
    "the billing worker",
    "the search cluster",
    "the notification queue",
    "the primary database",
    "the file storage layer",
    "the API edge",
)
CURRENCIES = (("$", 0.6), ("€", 0.25), ("£", 0.15))
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
TODAY = date(2026, 11, 27)


def pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[rng.randrange(len(items))]


def weighted(rng: random.Random, pairs: Sequence[tuple[str, float]]) -> str:
    values, weights = zip(*pairs, strict=True)
    return rng.choices(values, weights=weights)[0]


def price(rng: random.Random) -> float:
    return rng.choice((9, 19, 29, 49, 79, 99, 149, 249, 499, 1240)) + rng.choice((0, 0, 0.5, 0.99))


def money(value: float, symbol: str) -> str:
    return f"{symbol}{value:,.2f}"


def _day(rng: random.Random) -> str:
    d = TODAY - timedelta(days=rng.randint(1, 75))
    return f"{MONTHS[d.month - 1]} {d.day}"


def future_day(rng: random.Random) -> str:
    d = TODAY + timedelta(days=rng.randint(7, 60))
    return f"{MONTHS[d.month - 1]} {d.day}"


def _person(rng: random.Random) -> str:
    return f"{pick(rng, FIRST_NAMES)} {pick(rng, LAST_NAMES)}"


def _email(rng: random.Random) -> str:
    first = pick(rng, FIRST_NAMES).lower()
    last = pick(rng, LAST_NAMES).lower().replace("'", "")
    return f"{first}.{last}@{pick(rng, ('example.com', 'example.org', 'example.net'))}"


class Slots(dict[str, str]):
    """Template values drawn on first use and then kept, so repeats agree."""

    rng: random.Random

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        value = GENERATORS[key](self)
        self[key] = value
        return value

    def fill(self, template: str, **overrides: str) -> str:
        """Fill `template`; `overrides` win over (and do not change) the kept values."""
        if overrides:
            return template.format_map(ChainMap(overrides, self))
        return template.format_map(self)


def _other(slots: Slots, key: str, draw: Callable[[], str]) -> str:
    """A value different from `slots[key]` (two amounts in one sentence should differ)."""
    taken = slots[key]
    value = draw()
    while value == taken:
        value = draw()
    return value


def _r(fn: Callable[[random.Random], str]) -> Callable[[Slots], str]:
    return lambda slots: fn(slots.rng)


# Each generator sees the ticket's `Slots`, so values can depend on each other
# (every amount in one ticket is in the same currency).
GENERATORS: dict[str, Callable[[Slots], str]] = {
    "currency": lambda s: weighted(s.rng, CURRENCIES),
    "amount": lambda s: money(price(s.rng), s["currency"]),
    "amount2": lambda s: _other(s, "amount", lambda: money(price(s.rng), s["currency"])),
    "invoice": _r(lambda r: f"INV-2026-{r.randint(1000, 99999):05d}"),
    "order": _r(lambda r: f"ORD-{r.randint(100000, 999999)}"),
    "card": _r(lambda r: f"{pick(r, CARDS)} ending {r.randint(1000, 9999)}"),
    "plan": _r(lambda r: pick(r, PLANS)),
    "plan2": lambda s: pick(s.rng, [p for p in PLANS if p != s["plan"]]),
    "day": _r(_day),
    "day2": _r(_day),
    "person": _r(_person),
    "first": _r(lambda r: pick(r, FIRST_NAMES)),
    "email": _r(_email),
    "email2": _r(_email),
    "company": _r(lambda r: pick(r, COMPANIES)),
    "feature": _r(lambda r: pick(r, FEATURES)),
    "browser": _r(lambda r: pick(r, BROWSERS)),
    "browser2": lambda s: pick(s.rng, [b for b in BROWSERS if b != s["browser"]]),
    "mobile_os": _r(lambda r: pick(r, MOBILE_SYSTEMS)),
    "endpoint": _r(lambda r: pick(r, ENDPOINTS)),
    "endpoint2": lambda s: pick(s.rng, [e for e in ENDPOINTS if e != s["endpoint"]]),
    "service": _r(lambda r: pick(r, SERVICES)),
    "status": _r(lambda r: pick(r, ("500", "502", "503", "504", "429"))),
    "code": _r(lambda r: f"{pick(r, ('E', 'ERR-', 'TL-'))}{r.randint(1000, 9999)}"),
    "sdk_version": _r(lambda r: f"{r.randint(1, 2)}.{r.randint(0, 30)}.{r.randint(0, 9)}"),
    "version": _r(lambda r: f"{r.randint(3, 5)}.{r.randint(0, 14)}.{r.randint(0, 9)}"),
    "team": _r(lambda r: pick(r, TEAMS)),
    "sev": _r(lambda r: str(r.choice((1, 2, 2, 3)))),
    "month": _r(lambda r: pick(r, MONTHS)),
    "n": _r(lambda r: str(r.randint(2, 12))),
    "users": _r(lambda r: str(r.choice((5, 8, 12, 15, 20, 25, 40, 60, 120, 250)))),
    "minutes": _r(lambda r: str(r.choice((5, 10, 15, 20, 30, 45, 90)))),
    "seconds": _r(lambda r: str(r.choice((10, 30, 60, 120)))),
    "percent": _r(lambda r: str(r.randint(2, 60))),
    "percent2": _r(lambda r: str(r.randint(2, 40))),
    "percent3": _r(lambda r: str(r.randint(20, 90))),
    "future": _r(future_day),
    "region": _r(lambda r: pick(r, ("eu-west-1", "us-east-1", "us-west-2", "ap-southeast-2"))),
    "po": _r(lambda r: f"PO-{r.randint(10000, 99999)}"),
    "request_id": _r(lambda r: f"req_{r.getrandbits(48):012x}"),
}
