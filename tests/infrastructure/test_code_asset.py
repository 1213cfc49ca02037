"""What the synthesized stack ships: the functions' code asset and the dependency layer, as directories of the
cloud assembly. Local mode (moto, the runner in mailproxy_local/) and the tests never reach Lambda."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from stacks.mail_proxy_stack import STACK_NAME
from tests.infrastructure.conftest import API_HANDLER, REPORTER_HANDLER, SENDER_HANDLER, Synthesis

HANDLERS = (API_HANDLER, SENDER_HANDLER, REPORTER_HANDLER)
LOCAL_ONLY = frozenset({"moto", "mailproxy_local"})  # top-level names that must appear nowhere in Lambda
REPOSITORY_PACKAGES = frozenset({"mailproxy", "functions", "mailproxy_local", "stacks", "mailproxy_client", "tests"})
SHIPPED_PACKAGES = frozenset({"mailproxy", "functions"})  # CODE_ASSET_PATTERNS' allow-list


def asset_dir(synth: Synthesis, s3_key: str) -> Path:
    """The assembly directory of the file asset that the template references by `s3_key` (<hash>.zip)."""
    manifest = json.loads((synth.outdir / f"{STACK_NAME}.assets.json").read_text())
    source = manifest["files"][s3_key.removesuffix(".zip")]["source"]
    assert source["packaging"] == "zip"
    return synth.outdir / source["path"]


def imported_top_levels(path: Path) -> set[str]:
    """The top-level names a module imports (absolute imports only: relative ones stay in its package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def local_only_findings(root: Path) -> list[str]:
    """Everything under `root` that belongs to local mode or the tests: moto or mailproxy_local (a directory,
    a module or an import) and test code (a tests/ directory, a test_*.py module)."""
    findings = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        stems = {part.removesuffix(".py") for part in relative.parts}
        if stems & LOCAL_ONLY:
            findings.append(f"{relative}: local-only code")
        if "tests" in relative.parts[:-1] or (path.is_dir() and path.name == "tests"):
            findings.append(f"{relative}: tests")
        if path.suffix == ".py":
            if path.name.startswith("test_"):
                findings.append(f"{relative}: a test module")
            for name in sorted(imported_top_levels(path) & LOCAL_ONLY):
                findings.append(f"{relative}: imports {name}")
    return findings


def function_asset(synth: Synthesis) -> Path:
    keys = {synth.function(handler)[1]["Properties"]["Code"]["S3Key"] for handler in HANDLERS}
    assert len(keys) == 1, "the three functions share one code asset"
    return asset_dir(synth, keys.pop())


def layer_assets(synth: Synthesis) -> list[Path]:
    layers = synth.resources("AWS::Lambda::LayerVersion").values()
    directories = [asset_dir(synth, layer["Properties"]["Content"]["S3Key"]) for layer in layers]
    assert directories, "the stack has a dependency layer"
    return directories


def test_the_function_asset_holds_the_handlers_modules(synth: Synthesis) -> None:
    asset = function_asset(synth)
    for handler in HANDLERS:
        module = handler.rsplit(".", 1)[0]
        assert (asset / (module.replace(".", "/") + ".py")).is_file(), f"{module} is missing from the asset"
    for module in ("functions/api/app.py", "mailproxy/runtime.py", "mailproxy/services.py", "mailproxy/config.py"):
        assert (asset / module).is_file(), f"{module} is missing from the asset"
    assert {p.name for p in asset.iterdir()} == SHIPPED_PACKAGES


def test_no_local_mode_code_or_tests_in_the_function_asset_or_the_layer(synth: Synthesis) -> None:
    for directory in [function_asset(synth), *layer_assets(synth)]:
        assert local_only_findings(directory) == [], directory


def test_the_function_asset_imports_no_repository_package_it_does_not_ship(synth: Synthesis) -> None:
    asset = function_asset(synth)
    outside = {
        f"{path.relative_to(asset)}: imports {name}"
        for path in asset.rglob("*.py")
        for name in (imported_top_levels(path) & REPOSITORY_PACKAGES) - SHIPPED_PACKAGES
    }
    assert outside == set()


def test_the_scan_finds_planted_local_mode_code(tmp_path: Path) -> None:
    """The checks above can fail: the same scan over a tree with each kind of finding planted in it."""
    clean = tmp_path / "clean" / "mailproxy"
    clean.mkdir(parents=True)
    (clean / "ok.py").write_text("import json\nfrom mailproxy import config\nfrom . import relative\n")
    assert local_only_findings(tmp_path / "clean") == []

    planted = tmp_path / "planted"
    (planted / "mailproxy").mkdir(parents=True)
    (planted / "mailproxy" / "late.py").write_text("def start():\n    import moto.server\n")
    (planted / "mailproxy" / "wired.py").write_text("from mailproxy_local.runner import moto_server\n")
    (planted / "moto").mkdir()
    (planted / "moto" / "__init__.py").write_text("")
    (planted / "mailproxy" / "tests").mkdir()
    (planted / "mailproxy" / "tests" / "helpers.py").write_text("")
    (planted / "mailproxy" / "test_late.py").write_text("")
    assert local_only_findings(planted) == [
        "mailproxy/late.py: imports moto",
        "mailproxy/test_late.py: a test module",
        "mailproxy/tests: tests",
        "mailproxy/tests/helpers.py: tests",
        "mailproxy/wired.py: imports mailproxy_local",
        "moto: local-only code",
        "moto/__init__.py: local-only code",
    ]
