"""The one `Authorization` header builder (mailproxy/logic/http_auth.py) of attachment fetches and
delivery reports, and its check that a stored credential can go into a header."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from mailproxy.logic.http_auth import BadCredential, HttpAuth

SECRET = "tok-SECRET-4242"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_token_is_a_bearer_header() -> None:
    assert HttpAuth(token=SECRET).headers() == {"Authorization": f"Bearer {SECRET}"}


def test_user_and_password_are_a_basic_header_in_utf8() -> None:
    assert HttpAuth(user="u", password="p").headers() == {"Authorization": basic("u", "p")}
    assert HttpAuth(user="ünï", password="pässwörd").headers() == {"Authorization": basic("ünï", "pässwörd")}
    assert HttpAuth(user="", password="").headers() == {"Authorization": basic("", "")}  # both set, if empty


def test_a_token_wins_over_user_and_password() -> None:
    assert HttpAuth(token=SECRET, user="u", password="p").headers() == {"Authorization": f"Bearer {SECRET}"}


@pytest.mark.parametrize(
    "auth",
    [HttpAuth(), HttpAuth(token=""), HttpAuth(user="u"), HttpAuth(password="p"), HttpAuth(token="", password="p")],
)
def test_no_header_without_a_token_or_both_user_and_password(auth: HttpAuth) -> None:
    assert auth.headers() == {}


def test_an_empty_token_falls_back_to_basic() -> None:
    assert HttpAuth(token="", user="u", password="p").headers() == {"Authorization": basic("u", "p")}


def test_the_secrets_are_not_in_its_repr() -> None:
    text = repr(HttpAuth(token=SECRET, user="mailer", password="pa55-SECRET"))
    assert "SECRET" not in text and "mailer" in text


@pytest.mark.parametrize("value", ["a\nb", "a\r\nb", "caf\u00e9", "a\x00b", "a\u2028b", "tab\there", "del\x7f"])
@pytest.mark.parametrize(
    ("name", "auth"),
    [
        ("token", lambda v: HttpAuth(token=v)),
        ("token", lambda v: HttpAuth(token=v, user="u", password="p")),
        ("user", lambda v: HttpAuth(user=v, password="p")),
        ("password", lambda v: HttpAuth(user="u", password=v)),
    ],
)
def test_a_credential_that_is_not_printable_ascii_is_refused_naming_the_field_never_the_value(
    value: str, name: str, auth: Callable[[str], HttpAuth]
) -> None:
    with pytest.raises(BadCredential) as raised:
        auth(SECRET + value).check("report credential")
    assert str(raised.value) == (
        f"report credential {name}: holds a line break or a character that is not printable ASCII"
    )
    assert "SECRET" not in str(raised.value)


def test_printable_ascii_credentials_pass() -> None:
    HttpAuth(token="A-z0-9 ~!._").check("report credential")
    HttpAuth(user="mailer", password="p@ss word~").check("report credential")
    HttpAuth().check("report credential")


def test_only_the_credentials_the_header_carries_are_checked() -> None:
    HttpAuth(token=SECRET, user="ünï", password="a\nb").check("report credential")  # the token is sent
    HttpAuth(user="u\nx").check("report credential")  # no password: no Basic header
    HttpAuth(token="", password="a\nb").check("report credential")


def test_the_user_is_checked_before_the_password() -> None:
    with pytest.raises(BadCredential, match="credential user:"):
        HttpAuth(user="u\n", password="p\n").check("report credential")
