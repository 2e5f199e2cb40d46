"""Support tickets for the classify demo: subject and body composed from helpdesk phrases.

    rows = make_tickets(random.Random("7-tickets"), 3000)   # list of dicts, in id order

Each ticket has one main topic (billing, technical, account, other), sometimes a second
topic mentioned in passing, a body length drawn so most are 100-600 characters and about
one in ten is longer than 1,500 (pasted logs, quoted threads, invoice lines), and a few
tickets have no text at all, so the demo shows the null-text error path.

Tickets use their topic's everyday words (billed, technical, account), so a keyword
classifier such as the simulator's gets most of them right; a row's `topic` key records
the truth for checks and is not written to the files.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from jobs.examples.fakes import Slots, pick, weighted
from jobs.examples.ticket_extras import EXTRAS
from jobs.examples.ticket_phrases import (
    CLOSINGS,
    DETAILS,
    GREETINGS,
    SCENARIOS,
    SUBJECT_PREFIXES,
    URGENT,
    Scenario,
)

TOPICS = (("billing", 0.30), ("technical", 0.35), ("account", 0.22), ("other", 0.13))
# Outages come in as high priority more often than questions do; overall about 10% high.
P_HIGH = {"billing": 0.08, "technical": 0.16, "account": 0.06, "other": 0.03}
CUSTOMER_TIERS = (("free", 0.40), ("pro", 0.30), ("business", 0.20), ("enterprise", 0.10))
NO_TEXT_SHARE = 0.005
FIRST_ID = 41_200
END_OF_DAY = datetime(2026, 11, 27, tzinfo=UTC)


def _target_length(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.75:
        return rng.randint(100, 520)
    if roll < 0.84:
        return rng.randint(600, 1400)
    return rng.randint(1600, 4200)


def _subject(rng: random.Random, slots: Slots, scenario: Scenario, priority: str) -> str:
    subject = slots.fill(pick(rng, scenario.subjects))
    roll = rng.random()
    if priority == "high" and roll < 0.4:
        subject = f"URGENT: {subject}"
    elif roll < 0.15:
        subject = slots.fill(pick(rng, SUBJECT_PREFIXES)) + subject
    elif roll < 0.25:
        subject = subject.lower()
    return subject


def _body(
    rng: random.Random, slots: Slots, topic: str, scenario: Scenario, priority: str, target: int
) -> str:
    pool = list(scenario.details) + rng.sample(DETAILS[topic], k=rng.randint(2, 5))
    pool.reverse()  # scenario details first: they are what the ticket is about
    tail = [slots.fill(pick(rng, URGENT))] if priority == "high" else []
    tail.append(slots.fill(pick(rng, scenario.asks)))

    sentences = [slots.fill(scenario.opening)]
    while pool and sum(len(s) + 1 for s in sentences + tail) < target:
        sentences.append(slots.fill(pool.pop()))
    blocks = [" ".join(sentences + tail)]

    # Only tickets meant to be long get pasted material; short ones stay short.
    extras = list(EXTRAS[topic]) if target > 600 else []
    rng.shuffle(extras)
    while extras and sum(len(b) + 2 for b in blocks) < target:
        blocks.append(extras.pop()(rng, slots))
    if rng.random() < 0.08:  # a second topic, mentioned in passing
        other = weighted(rng, [t for t in TOPICS if t[0] != topic])
        blocks.append("P.S. " + slots.fill(pick(rng, SCENARIOS[other]).opening))
    if target > 150 and rng.random() < 0.6:
        blocks.insert(0, slots.fill(pick(rng, GREETINGS)))
    if target > 150 and rng.random() < 0.7:
        blocks.append(slots.fill(pick(rng, CLOSINGS)))
    return "\n\n".join(blocks)


def make_ticket(rng: random.Random, number: int) -> dict[str, object]:
    slots = Slots(rng)
    topic = weighted(rng, TOPICS)
    if rng.random() < P_HIGH[topic]:
        priority = "high"
    else:
        priority = "low" if rng.random() < 0.38 else "normal"
    scenario = SCENARIOS[topic][rng.randrange(len(SCENARIOS[topic]))]
    return {
        "ticket_id": f"T-{number:06d}",
        "subject": _subject(rng, slots, scenario, priority),
        "body": _body(rng, slots, topic, scenario, priority, _target_length(rng)),
        "priority": priority,
        "customer_tier": weighted(rng, CUSTOMER_TIERS),
        "topic": topic,  # what the ticket was written about; not a column of the files
    }


def make_tickets(rng: random.Random, rows: int) -> list[dict[str, object]]:
    """`rows` tickets in id order, created over the day before the nightly run."""
    tickets = [make_ticket(rng, FIRST_ID + i) for i in range(rows)]
    seconds = sorted(rng.randrange(24 * 3600) for _ in range(rows))
    for ticket, s in zip(tickets, seconds, strict=True):
        ticket["created_at"] = END_OF_DAY - timedelta(seconds=24 * 3600 - s)
    _blank_some(rng, tickets)
    return tickets


def _blank_some(rng: random.Random, tickets: list[dict[str, object]]) -> None:
    """A few tickets with no text at all, and a few with only a subject or only a body."""
    if not tickets:
        return
    n = max(1, round(len(tickets) * NO_TEXT_SHARE))
    no_text = ((None, None), ("", ""), (None, "   "), ("", None))
    chosen = rng.sample(range(len(tickets)), k=min(len(tickets), 2 * n))
    for i, idx in enumerate(chosen[:n]):
        tickets[idx]["subject"], tickets[idx]["body"] = no_text[i % len(no_text)]
    for i, idx in enumerate(chosen[n:]):
        field = "subject" if i % 2 else "body"
        tickets[idx][field] = None if i % 3 else ""
