"""Synthesize the app for the rehearsal: cdk.json's context, plus a client_sync_url (so that the reporter's
report URL is part of the template, as with `cdk deploy -c client_sync_url=...`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.settings import PROJECT_ROOT

PLACEHOLDER_REPORT_URL = "https://client.rehearsal.invalid/email/mailproxy/mp_endpoint/proxy_sync"
OUTDIR = PROJECT_ROOT / "build" / "rehearsal" / "cdk.out"


def synthesize(*, report_url: str = PLACEHOLDER_REPORT_URL, outdir: Path = OUTDIR, **context: Any) -> Path:
    from aws_cdk import App

    from stacks.build_layer import ensure_layer
    from stacks.mail_proxy_stack import build
    from stacks.settings import Settings

    values = {**json.loads((PROJECT_ROOT / "cdk.json").read_text()).get("context", {})}
    values.update({"client_sync_url": report_url, **context})
    app = App(context=values, outdir=str(outdir))
    settings = Settings.from_context(app.node)
    if settings.layer_dir is None:
        ensure_layer(settings.architecture)
    build(app)
    app.synth()
    return outdir
