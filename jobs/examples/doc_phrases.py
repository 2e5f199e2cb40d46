"""Phrase banks for the demo documents (incident reports, meeting notes, product updates).

Paragraph templates use `{slot}`s filled by `Slots`; lists are drawn without repeats.
"""

from __future__ import annotations

SYMPTOMS = (
    ("elevated error rates on the public API", "requests failed with HTTP 5xx errors"),
    ("delayed webhook deliveries", "webhook deliveries were delayed by up to {minutes} minutes"),
    ("failed report exports", "scheduled and manual exports failed"),
    ("login failures for single sign-on users", "users signing in with SSO saw 'invalid session'"),
    ("slow dashboard loading", "dashboard pages took more than 20 seconds to load"),
    ("duplicate invoice emails", "customers received the same invoice email two or three times"),
)

ROOT_CAUSES = (
    "A configuration change to the connection pool of {service} lowered the maximum number of "
    "connections from 200 to 20. Under the normal afternoon load the pool was exhausted within "
    "minutes, and requests queued until they timed out. The change had been reviewed, but the "
    "review did not include the load profile of the {region} region.",
    "The TLS certificate used between the API edge and {service} expired. Automatic renewal had "
    "failed silently for two weeks because the renewal job lacked permission to write the new "
    "certificate after a permissions clean-up in {month}.",
    "A deploy of {service} included a database migration that added an index without the "
    "concurrent option. The table was locked for the duration of the build, about {minutes} "
    "minutes, and every write to it waited.",
    "A noisy batch job started by an internal team sent {percent} times the usual traffic to "
    "{service}. Rate limits protected external callers but not internal ones, so the job "
    "consumed the shared capacity.",
    "A retry loop in the client library retried non-idempotent calls without backoff. When "
    "{service} slowed down briefly, the retries multiplied the load and turned a short "
    "slowdown into an outage.",
    "A DNS record for {service} was changed during a planned migration with a TTL of one day. "
    "Part of the fleet kept resolving the old address, which had already been decommissioned.",
)

TIMELINE = (
    "Automated alert fired: error rate for {endpoint} above 5% for five minutes.",
    "On-call engineer {first} acknowledged the page and opened an incident channel.",
    "Incident declared at severity {sev}; {person} took the incident commander role.",
    "First customer reports arrived through support; status page updated to 'investigating'.",
    "Dashboards showed the connection count of {service} at its limit.",
    "The most recent deploy was identified as a candidate and a rollback was prepared.",
    "Rollback started in {region}.",
    "Error rates began to fall; latency still above normal.",
    "Queued work drained; status page updated to 'monitoring'.",
    "Metrics back to baseline for thirty minutes; incident resolved.",
)

INVESTIGATION = (
    "The first hypothesis was a problem at our cloud provider, since the errors started in a "
    "single region. The provider's status page showed no incidents, and the same errors then "
    "appeared in a second region, so the team moved on within fifteen minutes.",
    "Logs from {service} showed a sharp rise in timeouts but no crashes. Traces made it clear "
    "that requests were waiting for a free connection rather than failing on their own, which "
    "pointed at capacity rather than at a bug in the request path.",
    "A rollback was considered early but delayed, because the last deploy had happened six hours "
    "before the first alert. In hindsight the change only took effect once traffic rose in the "
    "afternoon, which explains the delay between deploy and symptoms.",
    "Support collected {n} customer reports during the incident. All of them came from "
    "customers with large accounts, which helped narrow the problem to the heavier queries.",
    "The team paused the nightly batch jobs to reduce load while the fix rolled out. This bought "
    "headroom but delayed reports for about {percent}% of customers by several hours.",
)

WENT_WELL = (
    "The alert fired within five minutes of the first errors.",
    "The incident channel stayed focused, with one person coordinating.",
    "The status page was updated every thirty minutes.",
    "Rollback tooling worked as designed.",
    "Support had a prepared reply for affected customers within the first hour.",
)

WENT_WRONG = (
    "The change was not flagged as risky, so it went out without a canary.",
    "Two dashboards disagreed about the error rate, which cost time.",
    "The runbook for {service} was out of date.",
    "Customers learned about the problem before our status page said anything.",
    "The first responder did not have access to the production database metrics.",
)

ACTIONS = (
    "Add a load test for {service} to the release checklist",
    "Alert on certificate expiry thirty days ahead",
    "Require a canary stage for configuration changes",
    "Update the runbook for {service}",
    "Give every on-call engineer read access to database metrics",
    "Add per-team rate limits for internal callers",
    "Make the status page update part of the incident commander checklist",
    "Review retry settings in the client library",
)

TOPICS = (
    (
        "Roadmap for next quarter",
        "{person} walked through the draft roadmap for next quarter. The main themes are "
        "reliability of {feature}, a simpler onboarding flow and the first version of usage-based "
        "pricing. The group agreed that reliability comes first, and that onboarding work should "
        "not start before the design review on {future}.",
    ),
    (
        "Hiring",
        "We have two open positions: a senior backend engineer and a product designer. {first} "
        "reported {n} candidates in the pipeline, three of them at the final interview stage. "
        "Interview load is uneven; some people did five interviews last week and others none.",
    ),
    (
        "On-call load",
        "Pages went up {percent}% compared to last month, mostly from noisy alerts on {service}. "
        "{first} proposed a two-week effort to remove or tune the noisiest alerts before adding "
        "any new ones. There was some concern that this delays feature work, but the group agreed.",
    ),
    (
        "Customer escalations",
        "{company} escalated twice this week about slow exports. Support has a workaround, but the "
        "customer is up for renewal in two months and their account manager asked for a fix "
        "date. {person} will look at the export queue and report back by Thursday.",
    ),
    (
        "Pricing change",
        "The pricing change for the {plan} plan goes live on the first of next month. Billing has "
        "been tested end to end; the remaining risk is in invoices for customers who change plans "
        "mid-cycle. Support will get a briefing and a set of prepared answers next week.",
    ),
    (
        "Database migration",
        "The migration of {service} to the new database cluster is about {percent3}% done. The "
        "remaining tables are the largest ones, and the team wants a maintenance window for the "
        "final switch. {first} suggested a Sunday morning, when traffic is lowest.",
    ),
    (
        "Release {version}",
        "Release {version} is feature complete. Two bugs block it: a crash on {mobile_os} when "
        "opening attachments and a wrong total in the usage report. Both have fixes in review, so "
        "the release should go out on {future} unless QA finds something new.",
    ),
    (
        "Budget",
        "Cloud spend is {percent2}% over plan, mainly because of the new search cluster. {person} "
        "will prepare options: smaller instances, reserved capacity, or moving cold data to "
        "cheaper storage. A decision is needed before the finance review at the end of the month.",
    ),
    (
        "Support backlog",
        "The support backlog is down to about {n}0 open tickets from a peak of twice that. "
        "Most of the remaining ones are billing questions, which the new invoice page should "
        "reduce. The team will keep the weekend rotation for two more weeks.",
    ),
    (
        "Security review",
        "The annual security review found no critical issues. Three medium findings concern "
        "session length, password reset tokens and logging of personal data. Owners were "
        "assigned and fixes are due before the external audit.",
    ),
)

# Topic name -> what the meeting decided about it.
DECISIONS = {
    "Roadmap for next quarter": "Reliability of {feature} comes before new features next quarter.",
    "Hiring": "Interviews will be spread with a shared rota from next week.",
    "On-call load": "Noisy alerts get two weeks of clean-up before new alerts are added.",
    "Customer escalations": "{company} gets a fix date for the export problem by Friday.",
    "Pricing change": "The pricing change goes live as planned.",
    "Database migration": "The final database switch happens in a Sunday maintenance window.",
    "Release {version}": "Release {version} ships once both blocking bugs are fixed.",
    "Budget": "No new cloud spend until the cost options have been reviewed.",
    "Support backlog": "The weekend support rotation continues for two more weeks.",
    "Security review": "All medium findings are fixed before the external audit.",
}

FEATURES = (
    (
        "Scheduled exports to cloud storage",
        "Exports can now be delivered on a schedule straight to an S3 bucket or a shared drive. "
        "Pick a report, a time and a destination, and the file arrives every day or week without "
        "anyone having to log in. Failed deliveries are retried and reported in the audit log.",
    ),
    (
        "A faster dashboard",
        "The reporting dashboard now loads up to four times faster for large accounts. We moved "
        "the heaviest queries to precomputed tables that refresh every five minutes, so the "
        "numbers you see are at most five minutes old.",
    ),
    (
        "Usage alerts",
        "Admins can set alerts on seats, storage and API calls. When usage passes a threshold, "
        "admins get an email and a notification in the app, well before anything is blocked or "
        "billed as overage.",
    ),
    (
        "Single sign-on for every plan",
        "Single sign-on with SAML and OpenID Connect is now available on the {plan} plan as well. "
        "Setting it up takes about ten minutes, and existing users keep their projects and "
        "history when they switch.",
    ),
    (
        "Bulk actions",
        "You can now select up to a thousand records and change their owner, status or tags in "
        "one step. Bulk actions show a preview first and can be undone for thirty minutes.",
    ),
    (
        "A new mobile app",
        "The mobile app has been rebuilt from scratch. It starts twice as fast, works offline for "
        "reading, and supports attachments up to 100 MB. It requires {mobile_os} or later.",
    ),
    (
        "Audit log export",
        "The audit log can now be exported as CSV or streamed to your own logging system through "
        "a webhook, which several customers asked for to meet their compliance requirements.",
    ),
    (
        "Webhook retries and signing",
        "Webhooks are now signed, so you can check that a call really comes from us, and failed "
        "deliveries are retried with backoff for up to 24 hours. A delivery log shows every "
        "attempt and the response your endpoint gave.",
    ),
)

FIXES = (
    "Fixed a crash when opening large attachments on {mobile_os}.",
    "Invoices for plan changes mid-cycle now show the pro-rated amount on a separate line.",
    "Saved filters no longer reset after a page refresh.",
    "CSV imports accept files with a byte-order mark.",
    "Password reset emails are sent within a minute instead of up to fifteen.",
    "The date picker respects the workspace time zone.",
    "Fixed wrong totals in the usage report for accounts with more than 100 seats.",
    "Search results now include archived projects when the filter is set.",
)

DEPRECATIONS = (
    "Version 1 of the export API will be switched off on {future}. Calls to {endpoint} should "
    "move to the version 2 endpoint, which returns the same data in pages.",
    "Support for browser versions older than two years ends next month. Those browsers will "
    "see a notice asking users to upgrade.",
)

# --- material that lets a document grow long -------------------------------------------

DISCUSSION = (
    "{first} asked whether this affects customers on the {plan} plan; for now it does not.",
    "There was a short debate about timing, and the group settled on revisiting it in two weeks.",
    "{first} pointed out that the same question came up last quarter without a clear owner.",
    "Someone asked for numbers before deciding; {first} will bring them to the next meeting.",
    "The support team wants to be told a week ahead so they can prepare their answers.",
    "{first} noted that this overlaps with work the {team} team already has planned.",
    "Nobody objected, but two people asked for the plan in writing before they commit.",
    "A quick poll showed most of the group in favour, with {first} abstaining.",
    "It was agreed to keep the scope small and to measure the result before going further.",
    "{first} will share a one-page summary in the team channel after the meeting.",
    "The risk, as {first} put it, is that we fix the symptom and not the cause.",
    "Finance needs an estimate by the end of the month, so this cannot wait much longer.",
    "{first} reminded everyone that customers notice these changes before we announce them.",
    "The discussion ran over time; the remaining questions move to the next sync.",
)

INVESTIGATION_MORE = (
    "A second look at the metrics showed that the first errors appeared eleven minutes before "
    "the alert fired. The alert uses a five-minute window and a 5% threshold, which is too "
    "coarse for a service with traffic as spiky as {service}.",
    "Engineers reproduced the problem in staging by replaying one hour of production traffic. "
    "The replay hit the same limit within four minutes, which confirmed the cause and gave the "
    "team a safe place to test the fix before rolling it out.",
    "During the incident, two engineers changed settings on {service} at the same time without "
    "knowing about each other. Neither change made things worse, but it made the timeline hard "
    "to reconstruct afterwards, and the incident channel now records every change.",
    "Requests from the mobile app were hit harder than those from the web app, because the app "
    "retries failed calls three times with no delay. That tripled the load from mobile clients "
    "during the worst twenty minutes.",
)

DETECTION = (
    "Detection\nThe problem was first detected by an automated alert on the error rate of "
    "{endpoint}. Customer reports arrived a few minutes later. Because the alert fired during "
    "a shift handover, acknowledging it took longer than usual."
)

COMMUNICATION = (
    "Customer communication\nThe status page was first updated {minutes} minutes after the "
    "alert and then every thirty minutes until the incident was resolved. Support answered "
    "{n} tickets with a prepared reply and followed up individually with customers on the "
    "Enterprise plan. A summary of this report will be shared with customers who asked for it."
)

HOW_TO = (
    "Admins find the new options under Settings > Workspace; nothing changes until they are "
    "turned on.",
    "The help center has a short guide with screenshots, and the API documentation lists the "
    "new fields.",
    "It is rolling out to all workspaces over the next week, starting with the {region} region.",
    "We tested this with {n} customers during the beta; thank you to everyone who sent feedback.",
    "Existing settings are kept, and you can switch back to the old behaviour until the end of "
    "the quarter.",
)

COMING_NEXT = (
    "Coming next\nOver the next two releases we will focus on reliability and speed: faster "
    "search across large workspaces, fewer steps to invite a team, and a clearer invoice page. "
    "We are also starting work on usage-based pricing for the {plan} plan, and we will share a "
    "proposal with customers before anything changes.",
    "Known issues\nOn some {mobile_os} devices the app may ask for the password twice after the "
    "update. Signing out and in again fixes it, and a permanent fix is in review. Exports larger "
    "than 2 GB can still time out; splitting them by date range works in the meantime.",
    "From the feedback inbox\nMany of you asked for better control over notifications, and "
    "several teams asked for a read-only role for auditors. Both are on the roadmap. Keep the "
    "suggestions coming: every message to the feedback inbox is read by the product team.",
)
