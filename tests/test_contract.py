"""The chat contract's replies: acknowledgement for valid input, structured errors otherwise."""

from __future__ import annotations

import pytest

from gaps.contract import chat_reply


def test_valid_message_is_acknowledged() -> None:
    reply, valid = chat_reply('{"user": "Alice", "message": "Hello!", "room": "general"}')
    assert valid
    assert reply == {"status": "received", "user": "Alice", "message": "Hello!",
                     "room": "general"}


@pytest.mark.parametrize(("raw", "code"), [
    ("not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    ('{"user": "Alice", "room": "general"}', "missing_field"),
    ('{"user": 7, "message": "x", "room": "general"}', "missing_field"),
])
def test_bad_input_gets_a_structured_error(raw: str | bytes, code: str) -> None:
    reply, valid = chat_reply(raw)
    assert not valid
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
