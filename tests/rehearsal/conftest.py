"""The rehearsal runs on the session's synthesized template (tests/infrastructure's `synth` fixture)."""

from __future__ import annotations

import pytest

from rehearsal.rehearse import Result, rehearse
from rehearsal.template import StackTemplate
from tests.infrastructure.conftest import Synthesis, synth  # noqa: F401  (the session fixture, reused)


@pytest.fixture(scope="session")
def stack_template(synth: Synthesis) -> StackTemplate:  # noqa: F811
    return StackTemplate(synth.template_json)


@pytest.fixture(scope="session")
def report_url(synth: Synthesis) -> str:  # noqa: F811
    url: str = synth.context["client_sync_url"]
    return url


@pytest.fixture(scope="session")
def rehearsal(stack_template: StackTemplate, report_url: str) -> Result:
    return rehearse(stack_template, report_url_placeholder=report_url)
