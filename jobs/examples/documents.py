"""Documents for the summarise demo: incident reports, meeting notes, product updates.

    rows = make_documents(random.Random("7-documents"), 400)   # list of dicts, in id order

A document is a head (title, opening paragraph), sections added in their natural order
until it reaches a length drawn between 500 and 6,000 characters (most near 2,000, about
one in six past 4,000), and a tail (decisions, action items, closing).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from jobs.examples import doc_phrases as P
from jobs.examples.fakes import TEAMS, Slots, future_day, pick

MIN_CHARS, MODE_CHARS, MAX_CHARS = 500, 1800, 6000
P_HIGH = 0.10
FIRST_ID = 1


Frame = Callable[[int], tuple[list[str], list[str]]]


class _Doc:
    """A title, body sections in their natural order, and a `frame` that gives the head
    and tail for a body cut after n sections (meeting notes list only what was discussed)."""

    def __init__(self, title: str, body: list[str], frame: Frame) -> None:
        self.title, self.body, self.frame = title, body, frame

    def text(self, target: int) -> str:
        head, tail = self.frame(len(self.body))
        size = sum(len(b) + 2 for b in head + tail)
        n = 0
        for block in self.body:
            if n and (size >= target or size + len(block) + 2 > MAX_CHARS):
                break
            n += 1
            size += len(block) + 2
        head, tail = self.frame(n)
        return "\n\n".join(head + self.body[:n] + tail)


def _fixed(head: list[str], tail: list[str]) -> Frame:
    return lambda n: (head, tail)


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _clock(minute: int) -> str:
    return f"{minute // 60 % 24:02d}:{minute % 60:02d}"


def _incident(rng: random.Random, s: Slots) -> _Doc:
    short, long = P.SYMPTOMS[rng.randrange(len(P.SYMPTOMS))]
    number = f"INC-2026-{rng.randint(100, 999):04d}"
    start, length = rng.randint(8 * 60, 20 * 60), rng.randint(40, 180)
    title = f"Incident report {number}: {short}"
    summary = s.fill(
        f"On {{day}} between {_clock(start)} and {_clock(start + length)} UTC, {long}. "
        "About {percent}% of requests in {region} were affected, and the incident was handled "
        "at severity {sev}. This report describes what happened, why, and what we will change."
    )
    impact = s.fill(
        "Impact: {users} customer accounts saw errors, and support received {n} tickets. "
        "No data was lost. Work that failed during the incident was retried automatically "
        "once the service recovered, except for exports, which customers had to start again."
    )
    steps = sorted(rng.sample(range(len(P.TIMELINE)), k=rng.randint(5, len(P.TIMELINE))))
    times = sorted(rng.sample(range(start, start + length), k=len(steps)))
    entries = [f"{_clock(t)}  {s.fill(P.TIMELINE[i])}" for t, i in zip(times, steps, strict=True)]
    investigation = rng.sample(P.INVESTIGATION, k=len(P.INVESTIGATION)) + list(P.INVESTIGATION_MORE)
    body = [
        "Timeline (UTC)\n" + "\n".join(entries),
        "Root cause\n" + s.fill(pick(rng, P.ROOT_CAUSES)),
        s.fill(P.DETECTION),
        "Investigation\n" + s.fill(investigation[0]),
        *(s.fill(p) for p in investigation[1:3]),
        "What went well\n" + _bullets([s.fill(x) for x in rng.sample(P.WENT_WELL, k=3)]),
        "What went wrong\n" + _bullets([s.fill(x) for x in rng.sample(P.WENT_WRONG, k=3)]),
        s.fill(P.COMMUNICATION),
        *(s.fill(p) for p in investigation[3:]),
    ]
    actions = [
        f"{s.fill(a)} (owner: {pick(rng, TEAMS)} team, due {future_day(rng)})"
        for a in rng.sample(P.ACTIONS, k=rng.randint(3, 5))
    ]
    tail = ["Action items\n" + _bullets(actions)]
    return _Doc(title, body, _fixed([title, summary, impact], tail))


def _meeting(rng: random.Random, s: Slots) -> _Doc:
    title = s.fill("{team} weekly sync, {day}")
    people = sorted({_name(rng) for _ in range(rng.randint(4, 9))})
    topics = rng.sample(list(P.TOPICS), k=len(P.TOPICS))
    body = []
    for name, text in topics:
        # Whoever is named in the notes is someone in the room, and it varies by topic.
        lead, *speakers = rng.sample(people, k=min(len(people), 4))
        paragraph = [s.fill(text, person=lead, first=lead.split()[0])]
        for said in rng.sample(P.DISCUSSION, k=rng.randint(1, 3)):
            paragraph.append(s.fill(said, first=pick(rng, speakers or [lead]).split()[0]))
        body.append(f"{s.fill(name)}\n{' '.join(paragraph)}")
    owners = [pick(rng, people) for _ in topics]
    due = [future_day(rng) for _ in topics]

    def frame(n: int) -> tuple[list[str], list[str]]:
        names = [name for name, _ in topics[:n]]
        agenda = "\n".join(f"{i}. {s.fill(name)}" for i, name in enumerate(names, 1))
        head = [title, "Attendees: " + ", ".join(people), "Agenda\n" + agenda]
        decided = [s.fill(P.DECISIONS[name]) for name in names[:3]]
        actions = [
            f"{owner}: follow up on {s.fill(name).lower()} by {day}"
            for owner, name, day in zip(owners, names[:3], due, strict=False)
        ]
        return head, ["Decisions\n" + _bullets(decided), "Action items\n" + _bullets(actions)]

    return _Doc(title, body, frame)


def _update(rng: random.Random, s: Slots) -> _Doc:
    season = pick(rng, ("November", "October", "autumn"))
    title = s.fill(f"Product update: the {season} release, version {{version}}")
    intro = s.fill(
        "This release brings improvements across the product, most of them requested by "
        "customers on the {plan} plan. Everything below is available today for all "
        "workspaces; nothing needs to be switched on unless noted."
    )
    features = rng.sample(P.FEATURES, k=len(P.FEATURES))
    sections = [f"{name}\n{s.fill(text)} {s.fill(pick(rng, P.HOW_TO))}" for name, text in features]
    sections.insert(2, "Fixes\n" + _bullets([s.fill(f) for f in rng.sample(P.FIXES, k=5)]))
    sections.insert(5, "Deprecations\n" + " ".join(s.fill(d) for d in P.DEPRECATIONS))
    sections += [s.fill(x) for x in P.COMING_NEXT]
    closing = "Questions or feedback? Reply to this email or write to support; we read everything."
    return _Doc(title, sections, _fixed([title, intro], [closing]))


def _name(rng: random.Random) -> str:
    return Slots(rng).fill("{person}")


Builder = Callable[[random.Random, Slots], _Doc]
KINDS: tuple[tuple[Builder, float], ...] = ((_incident, 0.35), (_meeting, 0.40), (_update, 0.25))


def make_document(rng: random.Random, number: int) -> dict[str, object]:
    builders, weights = zip(*KINDS, strict=True)
    doc = rng.choices(builders, weights=weights)[0](rng, Slots(rng))
    target = round(rng.triangular(MIN_CHARS, MAX_CHARS, MODE_CHARS))
    priority = "high" if rng.random() < P_HIGH else pick(rng, ("low", "normal", "normal"))
    return {
        "doc_id": f"D-{number:05d}",
        "title": doc.title,
        "text": doc.text(target),
        "priority": priority,
    }


def make_documents(rng: random.Random, rows: int) -> list[dict[str, object]]:
    return [make_document(rng, FIRST_ID + i) for i in range(rows)]
