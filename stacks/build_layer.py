"""Build the Lambda dependency layer without Docker: manylinux wheels of requirements.txt, for Lambda.

    python -m stacks.build_layer [--arch x86_64|arm64] [--requirements requirements.txt] [--out build]

writes `build/layer-<arch>/python/...` (the layout Lambda expects: /opt/python on sys.path). The build
is skipped when the directory's stamp matches the hash of requirements.txt and the pip target
(platform, Python version), so `make synth` costs nothing when nothing changed. `--arch` defaults to
the `architecture` context of cdk.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STAMP_FILE = ".build-stamp"
PYTHON_VERSION = "3.11"  # must match the functions' runtime (stacks.settings.LAMBDA_RUNTIME)
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
_LAYOUT_VERSION = "1"  # bump to force a rebuild when this script's output changes

Runner = Callable[..., Any]


def layer_dir(out_root: Path, arch: str) -> Path:
    return out_root / f"layer-{arch}"


def pip_command(arch: str, requirements: Path, target: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--platform",
        PLATFORMS[arch],
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--target",
        str(target),
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
        "-r",
        str(requirements),
    ]


def stamp_for(arch: str, requirements: Path) -> str:
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    digest.update(f"\0{PLATFORMS[arch]}\0{PYTHON_VERSION}\0cp\0{_LAYOUT_VERSION}".encode())
    return digest.hexdigest()


def is_up_to_date(directory: Path, stamp: str) -> bool:
    stamp_path = directory / STAMP_FILE
    return (directory / "python").is_dir() and stamp_path.is_file() and stamp_path.read_text().strip() == stamp


def ensure_layer(
    arch: str,
    *,
    requirements: Path = PROJECT_ROOT / "requirements.txt",
    out_root: Path = PROJECT_ROOT / "build",
    force: bool = False,
    runner: Runner = subprocess.run,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> Path:
    """Return build/layer-<arch>, (re)building it only when requirements.txt or the target changed."""
    if arch not in PLATFORMS:
        raise ValueError(f"architecture must be one of {sorted(PLATFORMS)}, not {arch!r}")
    directory = layer_dir(out_root, arch)
    stamp = stamp_for(arch, requirements)
    if not force and is_up_to_date(directory, stamp):
        log(f"layer {directory} is up to date")
        return directory

    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "python").mkdir(parents=True)
    log(f"building layer {directory} ({PLATFORMS[arch]}, cp{PYTHON_VERSION}) from {requirements}")
    started = time.monotonic()
    runner(pip_command(arch, requirements, staging / "python"), check=True)
    # Console scripts carry this machine's interpreter path in their shebang: useless on Lambda.
    shutil.rmtree(staging / "python" / "bin", ignore_errors=True)
    (staging / STAMP_FILE).write_text(stamp + "\n")

    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    log(f"layer built in {time.monotonic() - started:.1f} s: {directory}")
    return directory


def context_architecture(cdk_json: Path = PROJECT_ROOT / "cdk.json") -> str:
    try:
        context = json.loads(cdk_json.read_text()).get("context", {})
    except FileNotFoundError:
        return "x86_64"
    return str(context.get("architecture", "x86_64"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default=None, help="default: cdk.json context")
    parser.add_argument("--requirements", type=Path, default=PROJECT_ROOT / "requirements.txt")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    ensure_layer(
        args.arch or context_architecture(),
        requirements=args.requirements,
        out_root=args.out,
        force=args.force,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
