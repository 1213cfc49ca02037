"""The `{MD5:hash}` filename marker (UPSTREAM-API.md §1 attachment): cut from the name, kept as the hash."""

from __future__ import annotations

import hashlib

from mailproxy.models import AttachmentIn, split_md5_marker

LOGO_MD5 = hashlib.md5(b"PNG logo bytes").hexdigest()  # noqa: S324 - the marker's hash, not security


def test_the_marker_is_cut_from_the_name_and_its_hash_kept() -> None:
    assert split_md5_marker(f"report{{MD5:{LOGO_MD5.upper()}}}.pdf") == ("report.pdf", LOGO_MD5)
    assert split_md5_marker("report.pdf") == ("report.pdf", None)
    assert split_md5_marker("report{MD5:abc}.pdf") == ("report{MD5:abc}.pdf", None)  # not 32 hex: not a marker


def test_the_marker_becomes_content_md5_unless_one_is_given() -> None:
    marked = AttachmentIn(filename=f"logo{{MD5:{LOGO_MD5}}}.png", storage_path="https://files.example.com/logo")
    assert (marked.filename, marked.content_md5) == ("logo.png", LOGO_MD5)
    given = AttachmentIn(
        filename=f"logo{{MD5:{LOGO_MD5}}}.png", storage_path="https://files.example.com/logo", content_md5="f" * 32
    )
    assert (given.filename, given.content_md5) == ("logo.png", "f" * 32)
