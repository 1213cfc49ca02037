"""Each function's synthesized code asset plus the dependency layer import on the runtime's own Python,
with nothing but boto3 beside them (the way Lambda loads them: /var/task and /opt/python on sys.path).

The layer is built for the functions' runtime (stacks/build_layer.py); the other CPython versions on this
machine (pyenv) show whether an upgrade of the runtime would need a rebuild first. When the functions run on
another CPU than this machine (arm64 functions, an x86_64 machine), the binary wheels of their layer cannot
load here: the check then imports the same requirements built for this machine's CPU, which proves the
pins and the code, not the other CPU's wheels (those come from the same pinned versions).
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from rehearsal.template import StackTemplate
from stacks.build_layer import ensure_layer

_MACHINE_ARCHITECTURE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

_PROBE = """
import importlib, sys
sys.path[:0] = sys.argv[1:3]
import boto3
for handler in sys.argv[3:]:
    module, _, attribute = handler.rpartition(".")
    getattr(importlib.import_module(module), attribute)
print("ok")
"""


def pyenv_python(version: str) -> Path | None:
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(Path(root, "versions").glob(f"{version}*/bin/python{version}"), reverse=True):
        return candidate
    return None


def _asset_dir(outdir: Path, properties: dict[str, object], key: str) -> Path | None:
    code = properties.get(key)
    s3_key = code.get("S3Key") if isinstance(code, dict) else None
    if not isinstance(s3_key, str):
        return None
    directory = outdir / f"asset.{s3_key.removesuffix('.zip')}"
    return directory if directory.is_dir() else None


def check_assets(outdir: Path, template: StackTemplate, *, log: Callable[[str], None]) -> list[str]:
    problems: list[str] = []
    layers = template.of_type("AWS::Lambda::LayerVersion")
    (layer_id, layer), *_ = layers.items()
    layer_dir = _asset_dir(outdir, layer.get("Properties", {}), "Content")
    if layer_dir is None or not (layer_dir / "python").is_dir():
        return [f"layer {layer_id}: no synthesized asset with python/ under {outdir}"]
    functions = template.functions()
    runtimes = {str(f.properties.get("Runtime", "")) for f in functions}
    handlers = [f.handler for f in functions]
    code_dirs = {_asset_dir(outdir, f.properties, "Code") for f in functions}
    if None in code_dirs or len(code_dirs) != 1:
        return [f"expected one synthesized code asset for the functions, found {code_dirs}"]
    (code_dir,) = code_dirs
    assert code_dir is not None
    layer_python = _layer_for_this_machine(layer_dir, functions[0].properties, log=log)
    for version in ("3.11", "3.12", "3.13"):
        python = pyenv_python(version)
        runtime = f"python{version}"
        if python is None:
            log(f"  {runtime}: not on this machine (pyenv), skipped")
            continue
        # -I -S: no site-packages, no environment, no working directory: the standard library, the code
        # asset (/var/task) and the layer (/opt/python, which carries the pinned boto3) only.
        answer = subprocess.run(  # noqa: S603 (a pyenv interpreter, fixed arguments)
            [str(python), "-I", "-S", "-c", _PROBE, str(code_dir), str(layer_python), *handlers],
            capture_output=True,
            text=True,
            env={"GMP_MODE": "local", "AWS_DEFAULT_REGION": "eu-west-1", "PATH": os.environ.get("PATH", "")},
            cwd=tempfile.gettempdir(),
            check=False,
        )
        is_runtime = runtime in runtimes
        if answer.returncode == 0:
            log(f"  {runtime}{' (the functions runtime)' if is_runtime else ''}: {len(handlers)} handlers import")
        else:
            last = (answer.stderr.strip().splitlines() or ["?"])[-1]
            message = f"{runtime}: the handlers do not import with the asset and layer: {last}"
            if is_runtime:
                problems.append(message)
            else:
                log(f"  {message} (not the functions' runtime: rebuild the layer before moving to it)")
    return problems


def _layer_for_this_machine(layer_dir: Path, function: dict[str, object], *, log: Callable[[str], None]) -> Path:
    """The synthesized layer, or the same requirements built for this machine's CPU when the functions'
    architecture is another one."""
    architectures = function.get("Architectures") or ["x86_64"]
    target = str(architectures[0]) if isinstance(architectures, list) else "x86_64"
    here = _MACHINE_ARCHITECTURE.get(platform.machine().lower(), target)
    if here == target:
        return layer_dir / "python"
    log(f"  the functions run on {target}, this machine is {here}: importing the layer's requirements built for {here}")
    return ensure_layer(here, log=log) / "python"
