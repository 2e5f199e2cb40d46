"""Blocks that make a demo ticket long: pasted logs and stack traces, invoice lines,
payment history, reproduction steps, a quoted earlier reply, a policy excerpt.

    block = log_block(rng, slots)        # or any of EXTRAS[topic]

Each block is a function of the ticket's `Random` and `Slots`, so it names the same
invoice, endpoint or error code as the rest of the ticket.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from jobs.examples.fakes import GENERATORS, Slots, money, pick, price

Extra = Callable[[random.Random, Slots], str]

_LOG_MESSAGES = (
    "upstream request timed out after {s}s",
    "connection reset by peer",
    "retrying request (attempt {k} of 5)",
    "token refresh failed: invalid_grant",
    "worker exited with code 137",
    "export job {job} failed: error {code}",
    "response status {status} from {endpoint}",
    "slow query took {ms} ms",
)


def log_block(rng: random.Random, slots: Slots) -> str:
    lines = ["Here is what our logs show:"]
    start = rng.randrange(20 * 3600)
    offsets = sorted(rng.randrange(900) for _ in range(rng.randint(8, 22)))
    for offset in offsets:
        t = start + offset
        message = pick(rng, _LOG_MESSAGES).format(
            s=rng.randint(2, 60),
            k=rng.randint(1, 5),
            ms=rng.randint(1200, 9800),
            job=rng.randint(10000, 99999),
            code=slots["code"],
            status=slots["status"],
            endpoint=slots["endpoint"],
        )
        level = pick(rng, ("ERROR", "WARN", "ERROR", "INFO"))
        component = pick(rng, ("api", "worker", "sync", "auth"))
        stamp = f"2026-11-26T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z"
        lines.append(f"{stamp} {level:<5} [{component}] {message}")
    return "\n".join(lines)


def stack_trace(rng: random.Random, slots: Slots) -> str:
    frames = rng.sample(
        [
            'File "client/session.py", line 212, in request',
            'File "client/retry.py", line 88, in send',
            'File "exporter/run.py", line 41, in export_all',
            'File "exporter/writer.py", line 133, in flush',
            'File "sdk/http.py", line 310, in _do_request',
            'File "sdk/auth.py", line 57, in refresh',
            'File "app/main.py", line 19, in <module>',
        ],
        k=rng.randint(3, 6),
    )
    body = "\n".join(f"  {f}" for f in frames)
    return (
        f"The SDK (version {slots['sdk_version']}) raises this:\n"
        f"Traceback (most recent call last):\n{body}\n"
        f"TimeoutError: request to {slots['endpoint']} exceeded {slots['seconds']} seconds"
    )


def http_exchange(rng: random.Random, slots: Slots) -> str:
    limit, day = rng.choice((50, 100, 500)), rng.randint(1, 26)
    payload = f'{{"limit": {limit}, "since": "2026-11-{day:02d}"}}'
    return (
        "Request and response (key removed):\n"
        f"curl -s -X POST https://api.example.com{slots['endpoint']} \\\n"
        '  -H "Authorization: Bearer <redacted>" -H "Content-Type: application/json" \\\n'
        f"  -d '{payload}'\n"
        f"HTTP/1.1 {slots['status']}\n"
        f'{{"error": {{"code": "{slots["code"]}", "message": "the request could not be completed", '
        f'"request_id": "{slots["request_id"]}"}}}}'
    )


def steps(rng: random.Random, slots: Slots) -> str:
    chosen = rng.sample(
        [
            "Log in as an admin user",
            f"Open {slots['feature']} from the left menu",
            "Select the last 90 days as the date range",
            "Click 'Export' and choose CSV",
            "Wait about a minute",
            "Refresh the page",
            f"Switch to {slots['browser']} and repeat",
            "Open the settings page and save without changes",
        ],
        k=rng.randint(4, 7),
    )
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(chosen, 1))
    return f"Steps to reproduce:\n{numbered}\nExpected: it works. Actual: error {slots['code']}."


def quoted_reply(rng: random.Random, slots: Slots) -> str:
    agent = pick(rng, ("Sam", "Lena", "Marco", "Ada", "Kofi"))
    reply = pick(
        rng,
        (
            "Thanks for reaching out. I have passed this on to the relevant team and we will "
            "get back to you within two business days.",
            "Could you send us a screenshot and the exact time it happened? That helps us find "
            "the request in our logs.",
            "We have applied a fix on our side. Could you try again and let us know if the "
            "problem persists?",
            "I can see the issue and have escalated it. In the meantime, "
            "please do not retry the operation.",
        ),
    )
    earlier = pick(
        rng,
        (
            "I am writing again because the problem is still there.",
            "Following up on my earlier message: nothing has changed since.",
            "As mentioned before, this keeps happening.",
        ),
    )
    quote = f"On {slots['day2']}, {agent} from support wrote:\n> {reply}\n> Best, {agent}"
    return f"{earlier}\n\n{quote}"


def invoice_lines(rng: random.Random, slots: Slots) -> str:
    items = [
        f"{slots['plan']} plan, monthly",
        "Additional seat",
        "Storage add-on (100 GB)",
        "Priority support",
        "API overage",
        "Onboarding package",
        "Pro-rated adjustment",
    ]
    lines = [f"Invoice {slots['invoice']} as we received it:"]
    total = 0.0
    for item in rng.sample(items, k=rng.randint(3, len(items))):
        qty, unit = rng.randint(1, 25), price(rng)
        total += qty * unit
        lines.append(f"  {item:<28} {qty:>3} x {money(unit, slots['currency']):>10}")
    lines.append(f"  {'Total':<28} {money(total, slots['currency']):>16}")
    return "\n".join(lines)


def payment_history(rng: random.Random, slots: Slots) -> str:
    lines = ["Our payment history from the bank statement:"]
    for month in range(rng.randint(4, 9), 0, -1):
        status = pick(rng, ("paid", "paid", "paid", "declined", "refunded"))
        amount = money(price(rng), slots["currency"])
        lines.append(f"  2026-{11 - month:02d}-{rng.randint(1, 28):02d}  {amount:>10}  {status}")
    return "\n".join(lines)


def user_list(rng: random.Random, slots: Slots) -> str:
    role = pick(rng, ("member", "admin", "viewer"))
    people = [slots.fill("{email}")]
    people += [GENERATORS["email"](slots) for _ in range(rng.randint(3, 14))]
    listed = "\n".join(f"- {p} ({role})" for p in dict.fromkeys(people))
    return f"The users concerned, as exported from our directory:\n{listed}"


def policy_excerpt(rng: random.Random, slots: Slots) -> str:
    clauses = rng.sample(
        [
            "All user data must be stored within the EU.",
            "Administrative access must be protected by two-factor authentication.",
            "Access for departing employees must be revoked within 24 hours.",
            "Vendors must notify us of security incidents within 72 hours.",
            "Data must be encrypted at rest and in transit.",
            "Audit logs must be kept for at least one year.",
            "Personal data must be deleted within 30 days of a request.",
        ],
        k=rng.randint(4, 7),
    )
    listed = "\n".join(f"- {c}" for c in clauses)
    return f"From our internal policy ({slots['company']}):\n{listed}"


def wishlist(rng: random.Random, slots: Slots) -> str:
    wishes = rng.sample(
        [
            f"A dark theme for {slots['feature']}",
            "Keyboard shortcuts for the most common actions",
            "Exporting charts as SVG, not only PNG",
            "Per-team notification settings",
            "A read-only role for auditors",
            "Better search across archived projects",
            "Scheduling reports in the recipient's time zone",
            "A changelog feed we can subscribe to",
        ],
        k=rng.randint(3, 6),
    )
    intro = f"While I am writing, here is what the team at {slots['company']} would love to see:"
    return intro + "\n" + "\n".join(f"- {w}" for w in wishes)


EXTRAS: dict[str, tuple[Extra, ...]] = {
    "billing": (invoice_lines, payment_history, quoted_reply, policy_excerpt),
    "technical": (log_block, stack_trace, http_exchange, steps, quoted_reply),
    "account": (user_list, policy_excerpt, quoted_reply),
    "other": (wishlist, policy_excerpt, quoted_reply),
}
