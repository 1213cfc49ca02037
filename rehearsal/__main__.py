"""python -m rehearsal: the deploy rehearsal (see rehearsal/__init__.py).

    python -m rehearsal [--template cdk.out/GenroMailProxy.template.json] [--logs] [--scan] [--runtimes]

Without --template it synthesizes the app first (cdk.json's context plus a placeholder client_sync_url,
as `cdk deploy -c client_sync_url=...` would) into build/rehearsal/cdk.out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rehearsal.synth import PLACEHOLDER_REPORT_URL, synthesize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", type=Path, help="a synthesized template (default: synthesize now)")
    parser.add_argument("--report-url", default=PLACEHOLDER_REPORT_URL, help="the client_sync_url synthesized")
    parser.add_argument("--logs", action="store_true", help="print the tail of each function's log")
    parser.add_argument("--scan", action="store_true", help="run checkov and cfn-lint (.venv-scan)")
    parser.add_argument("--runtimes", action="store_true", help="import the assets on the runtimes' Pythons")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.__stdout__ or sys.stdout, flush=True)  # also while the functions' output is routed

    started = time.monotonic()
    if args.template is None:
        say("synthesizing (cdk.json context + client_sync_url placeholder) ...")
        outdir = synthesize(report_url=args.report_url)
        template_path = outdir / "GenroMailProxy.template.json"
        say(f"synthesized in {time.monotonic() - started:.1f} s: {template_path}")
    else:
        template_path = args.template
        outdir = template_path.parent

    from rehearsal.rehearse import rehearse
    from rehearsal.template import StackTemplate

    template = StackTemplate.load(template_path)
    result = rehearse(template, report_url_placeholder=args.report_url, log=say)
    say(result.render(logs=args.logs))
    failed = not result.ok

    if args.runtimes:
        from rehearsal.assets import check_assets

        say("Assets on the runtimes' own Pythons (nothing but boto3 beside them):")
        problems = check_assets(outdir, template, log=say)
        for problem in problems:
            say(f"  - {problem}")
        failed = failed or bool(problems)

    if args.scan:
        from rehearsal.scan import scan

        say("Scanners:")
        problems = scan(template_path, log=say)
        for problem in problems:
            say(f"  - {problem}")
        failed = failed or bool(problems)

    say(f"rehearsal {'FAILED' if failed else 'passed'} in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
