"""Phrase banks for the demo support tickets; `{slot}`s are filled by `Slots`.

A `Scenario` is one kind of request (subject lines, opening, the details that go with it,
how the customer asks); `DETAILS` are sentences that fit any ticket of a topic.
"""

from __future__ import annotations

from typing import NamedTuple


class Scenario(NamedTuple):
    subjects: tuple[str, ...]
    opening: str
    details: tuple[str, ...]
    asks: tuple[str, ...]


def _s(subjects: tuple[str, ...], opening: str, details: tuple[str, ...], *asks: str) -> Scenario:
    return Scenario(subjects, opening, details, asks)


SCENARIOS: dict[str, tuple[Scenario, ...]] = {
    "billing": (
        _s(
            ("Charged twice for {plan} plan", "Double charge this month", "Duplicate payment"),
            "We were billed twice for the {plan} plan this month: two payments of {amount} "
            "on {day}.",
            ("Both payments went to the {card}.", "Only one invoice shows up in the billing page."),
            "Could you refund the duplicate payment?",
            "Please reverse one of the two charges.",
        ),
        _s(
            ("Invoice {invoice} shows the wrong amount", "Wrong amount on invoice {invoice}"),
            "Invoice {invoice} bills us {amount} but our contract price is {amount2}.",
            ("The invoice lists {n} more seats than we use.", "We signed the contract in spring."),
            "Please send a corrected invoice.",
            "Can you issue a credit note for the difference?",
        ),
        _s(
            ("Unexpected charge of {amount} on {card}", "Unknown charge on our card"),
            "There is a charge of {amount} on our {card} that I cannot match to any bill.",
            ("The charge is dated {day}.", "Nobody on our team upgraded anything recently."),
            "Can you explain what this charge is for?",
        ),
        _s(
            ("Billed after cancelling", "Cancel auto-renewal and refund"),
            "I cancelled our subscription on {day} but we were still billed {amount}.",
            ("I have the cancellation confirmation email.", "We have not logged in since then."),
            "Please refund the charge and confirm the cancellation.",
        ),
        _s(
            ("Card declined on renewal", "Payment failed but the money is gone"),
            "Our renewal payment failed even though the {card} is valid, and the billing page now "
            "says we are overdue.",
            ("The bank says the payment of {amount} was authorised.", "We got a dunning email."),
            "Can you check the payment on your side?",
            "Please make sure our service is not suspended while this is sorted out.",
        ),
        _s(
            ("Refund request", "Refund for unused upgrade"),
            "I need a refund for the {amount} we were billed on {day}; we never used the upgrade.",
            ("The upgrade was clicked by mistake.", "We downgraded again the same afternoon."),
            "Could you refund this charge?",
        ),
        _s(
            ("Need a copy of invoice {invoice} with our VAT number", "Invoice with VAT number"),
            "Can you resend invoice {invoice}? Our finance team needs it with our VAT number.",
            ("Our VAT number is registered in the EU.", "Our PO number is {po}; add it as well."),
            "Please send the corrected invoice to our finance inbox.",
        ),
        _s(
            ("Pro-rated charge after upgrade looks wrong", "Upgrade charge too high"),
            "After upgrading to {plan} mid-cycle the pro-rated charge on our bill came to "
            "{amount}, which seems too high.",
            ("We upgraded on {day}.", "The pricing page suggests about {amount2} for the rest."),
            "Can you explain how the pro-rated amount was calculated?",
        ),
        _s(
            ("Receipt missing for order {order}", "Where is my receipt?"),
            "Our finance team cannot find the receipt for order {order} in the billing history.",
            ("The payment was made with the {card}.",),
            "Could you send the receipt again?",
        ),
        _s(
            ("Invoiced in the wrong currency", "Currency on invoice {invoice}"),
            "We got billed in the wrong currency: our contract is in euros, the invoice is not.",
            ("The total on invoice {invoice} is {amount}.",),
            "Please reissue the invoice in euros.",
        ),
    ),
    "technical": (
        _s(
            (
                "Error {code} when exporting reports",
                "Technical issue: exports failing",
                "export broken ({code})",
            ),
            "Since {day} every export fails with error {code}.",
            ("It fails for both small and large reports.", "Scheduled exports fail the same way."),
            "Is there a known technical issue or a workaround?",
        ),
        _s(
            ("App crashes on startup after update to {version}", "Crash after update"),
            "After updating to version {version} the app crashes as soon as it opens on "
            "{mobile_os}.",
            ("Reinstalling did not help.", "The previous version worked fine."),
            "Can your technical team look into this?",
            "Is there a way to go back to the previous version?",
        ),
        _s(
            ("API requests to {endpoint} time out", "Timeouts on {endpoint}", "API timeouts"),
            "Requests to {endpoint} time out after {seconds} seconds, about {percent}% of the "
            "time.",
            ("Calls to {endpoint2} work fine.", "Retries sometimes succeed."),
            "Could your technical team check the logs on your side?",
        ),
        _s(
            ("Cannot log in: page keeps reloading", "Login loop", "can't log in"),
            "I cannot log in: after entering my password the page reloads and asks again.",
            ("Clearing the cache and cookies did not help.", "Private browsing behaves the same."),
            "Is this a technical problem on your side, and what should I do to get back in?",
        ),
        _s(
            ("{feature} not working since {day}", "Problem with {feature}"),
            "{feature} has stopped working for everyone in our team since {day}.",
            ("Nothing changed on our side.", "The page shows a spinner and then an error."),
            "Please let us know when the technical problem is fixed.",
        ),
        _s(
            ("HTTP {status} from {endpoint}", "Getting {status} errors from the API"),
            "Our integration gets HTTP {status} responses from {endpoint} since this morning.",
            ("Our request ID from the last failure was {request_id}.", "We did not deploy."),
            "Can your technical team check what is going on?",
        ),
        _s(
            ("Dashboard extremely slow to load", "Reports page very slow"),
            "The reporting dashboard takes several minutes to load, when it loads at all.",
            ("It used to load in a few seconds.", "We have about {users} saved reports."),
            "Is there a technical or performance problem on your side?",
        ),
        _s(
            ("Webhooks stopped arriving", "No webhooks since {day}"),
            "We have not received any webhooks since {day}, although events show in the UI.",
            ("Our endpoint answers 200 to test calls.", "The delivery log shows no attempts."),
            "Could your technical team check why deliveries stopped?",
        ),
        _s(
            ("Sync stuck at {percent}%", "Sync never finishes"),
            "The sync has been stuck at {percent}% for hours and never finishes.",
            ("I restarted it twice.", "About {users} thousand records are involved."),
            "Can someone technical look into this?",
        ),
        _s(
            ("Bulk import rejects valid CSV", "CSV import error 'unexpected column'"),
            "Bulk import rejects our CSV file with 'unexpected column', but the columns match "
            "the documentation.",
            ("The file is UTF-8 with a header row.", "The same file imported fine last month."),
            "What is wrong with the file? I am not very technical, so simple steps would help.",
        ),
        _s(
            ("Mobile app freezes on {mobile_os}", "App freezing when opening attachments"),
            "The mobile app freezes on {mobile_os} when I open an attachment.",
            ("The app version shown in settings is {version}.", "It happens on Wi-Fi and 4G."),
            "Is this a known bug? Happy to send technical details.",
        ),
        _s(
            ("Login fails with 'invalid session'", "SSO login broken for some users"),
            "Logging in with single sign-on fails with 'invalid session' for some users.",
            ("About {percent}% of our users are affected.", "Password login still works."),
            "Can someone technical check our SSO configuration?",
        ),
    ),
    "account": (
        _s(
            ("Change the email on our account", "Update account email"),
            "Please change the email address on our account from {email} to {email2}.",
            ("The old address no longer exists, so I cannot confirm from it.",),
            "Can you make this change for us?",
        ),
        _s(
            ("Password reset email never arrives", "No password reset email"),
            "I requested a password reset for my account three times but the email never arrives.",
            ("I checked the spam folder as well.", "My login email is {email}."),
            "Could you send the reset link again or reset it for me?",
        ),
        _s(
            ("Please add {users} seats to our workspace", "More seats needed"),
            "We need {users} more seats on our account for new team members starting next week.",
            ("They should all get the member role.", "We are on the {plan} plan."),
            "Can you add them, or tell me how?",
        ),
        _s(
            ("Remove a former employee from our account", "Offboarding {person}"),
            "{person} has left the company; please remove their account from our workspace.",
            ("Their projects should move to me.", "Access must be revoked today."),
            "Please confirm once it is done.",
        ),
        _s(
            ("Downgrade from {plan} to {plan2}", "Change of plan"),
            "We would like to move our account from the {plan} plan to {plan2} at the end of "
            "this cycle.",
            ("Please keep all projects and history.",),
            "What is the process for this?",
        ),
        _s(
            ("Transfer account ownership to {person}", "New account owner"),
            "Please transfer ownership of the account to {person} ({email}).",
            ("I am the current owner and am leaving the company.",),
            "Can you make this change for us?",
        ),
        _s(
            ("Upgrade to the {plan} plan", "Upgrading our workspace"),
            "We want to upgrade our account to the {plan} plan and keep our existing data.",
            ("We currently have {users} members.",),
            "Could you send me the steps?",
        ),
        _s(
            ("Close my account", "Delete my account and data"),
            "Please close my account and delete my personal data.",
            ("My login email is {email}.",),
            "Please confirm when the account is closed.",
        ),
        _s(
            ("Locked out after too many attempts", "Account locked"),
            "My account is locked after too many login attempts and the unlock link has expired.",
            ("My login email is {email}.",),
            "Can you unlock it?",
        ),
        _s(
            ("Update company name on the account", "Company renamed"),
            "Our company changed its name to {company}; the account still shows the old one.",
            ("The new name should also appear on future invoices.",),
            "Can you update it?",
        ),
        _s(
            ("Enable two-factor authentication for all users", "Enforce 2FA"),
            "How do I require two-factor authentication for every user account in our "
            "organisation?",
            ("We have {users} members and {n} admins.",),
            "Could you send me the steps?",
        ),
        _s(
            ("Merge two accounts", "Duplicate accounts"),
            "We accidentally created two accounts and would like to merge them into one.",
            ("The one to keep is registered to {email}.",),
            "Is this possible?",
        ),
    ),
    "other": (
        _s(
            ("Feature request: dark mode for {feature}", "Dark mode?"),
            "It would be great to have a dark mode for {feature}.",
            ("Other tools we use already offer this.",),
            "Is this something you are planning?",
        ),
        _s(
            ("Partnership inquiry from {company}", "Partnership"),
            "I am reaching out from {company} about a possible partnership.",
            ("We build tools for teams like yours.",),
            "Who would be the right person to talk to?",
        ),
        _s(
            ("Security questionnaire for our vendor review", "Vendor security review"),
            "Our procurement team needs a completed security questionnaire before we sign.",
            ("Our legal team reviews all vendors once a year.",),
            "Could you fill it in or send your standard answers?",
        ),
        _s(
            ("Data processing agreement (GDPR)", "DPA request"),
            "Could you send us your data processing agreement for GDPR purposes?",
            ("Our legal team reviews all vendors once a year.",),
            "Could you send it over?",
        ),
        _s(
            ("Feedback on the new design", "New design feedback"),
            "Just wanted to share some feedback on the new design of {feature}.",
            ("The new layout is cleaner, but the menu is harder to find.",),
            "Let me know what you think.",
        ),
        _s(
            ("Do you offer discounts for non-profits?", "Non-profit pricing"),
            "Do you offer discounts for non-profit organisations or schools?",
            ("We are a charity with about {users} staff.",),
            "Let me know what is possible.",
        ),
        _s(
            ("Question about your roadmap", "Roadmap"),
            "Is there a public roadmap? We are interested in what is planned for {feature}.",
            ("Several of my colleagues asked about the same thing.",),
            "Is there somewhere we can follow this?",
        ),
        _s(
            ("Accessibility of {feature}", "Screen reader support"),
            "Some of our staff use screen readers and have trouble with {feature}.",
            ("Buttons are announced without labels.",),
            "Is accessibility work planned?",
        ),
        _s(
            ("Thank you to {first} from your team", "Great service"),
            "I wanted to say thank you to {first}, who helped us last week; great service.",
            ("It made a real difference for our launch.",),
            "Please pass this on.",
        ),
        _s(
            ("Speaking opportunity at our conference", "Invitation to speak"),
            "We would like to invite someone from your team to speak at our conference.",
            ("The event takes place in the spring; talks are 30 minutes.",),
            "Who would be the right person to talk to?",
        ),
        _s(
            ("Where is your status page?", "Status page"),
            "Is there a status page we can subscribe to?",
            ("We would like to get notified of maintenance.",),
            "Could you send the link?",
        ),
        _s(
            ("Suggestion for the documentation", "Docs: broken example"),
            "The documentation page about {feature} has a broken example.",
            ("The sample code uses a parameter that no longer exists.",),
            "Could you fix it?",
        ),
    ),
}

DETAILS: dict[str, tuple[str, ...]] = {
    "billing": (
        "Our billing contact is at {company}.",
        "I attached a screenshot of the bank statement.",
        "Our finance department closes the month on Friday.",
        "We are on annual billing.",
        "Our PO number is {po} and it has to be on every invoice.",
        "I could not find a way to download past invoices in the billing page.",
        "This is the second time this has happened this year.",
        "We were told by sales that the first month would be free.",
        "The tax line looks wrong too: we are VAT registered in the EU.",
    ),
    "technical": (
        "I am using {browser}.",
        "It started right after the maintenance window on {day2}.",
        "We are in the {region} region.",
        "We did not change anything in our integration recently.",
        "The same steps work on a colleague's machine with {browser2}.",
        "Our monitoring shows latency jumping from 200 ms to several seconds.",
        "Nothing useful appears in the browser console.",
        "Our technical contact for this is {person}.",
        "Happy to share more technical details if needed.",
        "We use the official SDK, version {sdk_version}.",
        "I tried logging out and in again and a different network.",
    ),
    "account": (
        "I am the account administrator.",
        "Our workspace is registered to {company}.",
        "Let me know if you need anything to verify my identity.",
        "We need this done before the end of the month.",
        "I could not find this option in the settings page.",
        "Our security policy requires the change to show in the audit log.",
        "I tried the self-service settings but the field is greyed out.",
    ),
    "other": (
        "We are a team of about {users} people at {company}.",
        "No rush on this, whenever you have time.",
        "Happy to jump on a call if that is easier.",
        "We have been customers for over two years.",
        "I could not find the answer in your help center.",
        "Please forward this to the right person if this is not the right inbox.",
    ),
}

SUBJECT_PREFIXES = ("Re: ", "Fwd: ", "RE: ", "[{company}] ", "Question: ")

GREETINGS = (
    "Hi,",
    "Hello,",
    "Hi there,",
    "Hello support team,",
    "Dear support,",
    "Hey team,",
    "Good morning,",
    "Hi {first},",
    "To whom it may concern,",
)

URGENT = (
    "This is blocking our whole team, please treat it as urgent.",
    "We have a customer deadline tomorrow, so we need this fixed today.",
    "This affects production for all of our {users} users.",
    "Please escalate: our operations are stopped until this is resolved.",
)

CLOSINGS = (
    "Thanks,\n{first}",
    "Best regards,\n{person}\n{company}",
    "Thank you in advance.",
    "Cheers,\n{first}",
    "Kind regards,\n{person}",
    "Thanks!",
    "Regards,\n{first} ({company})",
)
