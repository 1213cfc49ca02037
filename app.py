#!/usr/bin/env python3
"""CDK entry point: `python app.py` synthesizes offline into cdk.out/ (or $CDK_OUTDIR).

Settings come from the context: cdk.json's "context" (read here too, so that `python app.py` works
without the CDK CLI), overridden by the CLI's `-c key=value`; see stacks/settings.py. Unless the
context names a `layer_dir`, the dependency layer build/layer-<architecture> is (re)built first when
stale. cdk-nag's AwsSolutions checks run as a validation plugin: unacknowledged errors fail the synth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_cdk import App

from stacks.build_layer import ensure_layer
from stacks.mail_proxy_stack import build
from stacks.settings import Settings

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(CDK_JSON.read_text()).get("context", {})
    return context


def main() -> None:
    # Context given by the CDK CLI (cdk.json + -c) takes precedence over this one.
    app = App(context=cdk_json_context(), outdir=os.environ.get("CDK_OUTDIR", "cdk.out"))
    settings = Settings.from_context(app.node)
    if settings.layer_dir is None:
        ensure_layer(settings.architecture)
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
