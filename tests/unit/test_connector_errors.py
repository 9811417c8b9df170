"""What a job records and logs of a connector's error: its message and answer, no e-mail address."""

from __future__ import annotations

import pytest

from connectors.errors import PermanentError, describe, without_emails


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"message": "ada.love+x@example.org is taken"}', '{"message": "<email> is taken"}'),
        ("{'recipient_email': 'ada@example.org'}", "{'recipient_email': '<email>'}"),
        ("to Ada <ada@mail.example.co.uk>.", "to Ada <<email>>."),
        ("é.ü@exämple.de", "<email>"),
        (  # a URL's query, as urllib3 quotes it
            "url: /badges?filter=recipient_email%3A%3Aada%40example.org%7Cbadge_template_id%3A%3At",
            "url: /badges?filter=recipient_email%3A%3A<email>%7Cbadge_template_id%3A%3At",
        ),
        ("answered 422: User already has this badge", "answered 422: User already has this badge"),
        ("@handle and a@b without a domain dot", "@handle and a@b without a domain dot"),
    ],
)
def test_without_emails_replaces_each_address_and_keeps_the_rest(text, shown):
    assert without_emails(text) == shown


def test_describe_leaves_emails_out_of_the_message_and_the_answer():
    refusal = PermanentError("Credly answered not a badge: {'recipient_email': 'ada@example.org'}")
    refusal.body = {"data": {"message": "Recipient ada@example.org is invalid", "code": 42}}
    assert describe(refusal) == (
        "Credly answered not a badge: {'recipient_email': '<email>'} "
        '{"data": {"message": "Recipient <email> is invalid", "code": 42}}'
    )


@pytest.mark.parametrize(
    ("body", "shown"),
    [("no\x00pe", "no\ufffdpe"), ({"message": "no\x00pe"}, '{"message": "no\\u0000pe"}')],
    ids=["text", "json"],
)
def test_describe_holds_no_nul_a_database_cannot_store(body, shown):
    refusal = PermanentError("Credly answered 400")
    refusal.body = body
    assert describe(refusal) == f"Credly answered 400 {shown}"
