"""The two distributions as pip builds them: the client wheel installs alone, offline, with the dependencies it
declares (from the wheelhouse `make install` fills), and runs `gmp`; the server wheel holds only its packages.

The wheels are built from copies of the sources, so a build leaves nothing in the repository (and no stale
build/ directory of the repository's can slip into a wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
WHEELHOUSE = VENV / "wheelhouse"  # the client's dependencies, as wheels (the Makefile's install target)
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "build", "cdk.out", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
SERVER_PACKAGES = {"mailproxy", "mailproxy_local"}
REPOSITORY_PACKAGES = {"mailproxy", "mailproxy_local", "functions", "stacks", "client", "tests", "bench", "rehearsal"}


def build_wheel(source: Path, tmp_path: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation` of a copy of `source`: the wheel file."""
    copy = tmp_path / "src" / source.name
    shutil.copytree(source, copy, ignore=NOT_SOURCES)
    out = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            out,
            copy,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    [wheel] = out.glob("*.whl")
    return wheel


def top_level_entries(wheel: Path) -> set[str]:
    """The wheel's top-level directories and modules, but its own .dist-info."""
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    return {top.removesuffix(".py") for top in tops if not top.endswith(".dist-info")}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the client wheel and what pip resolved for it from the wheelhouse, nothing else."""
    assert any(WHEELHOUSE.glob("httpx-*.whl")), f"no wheelhouse at {WHEELHOUSE}: run `make install`"
    tmp_path = tmp_path_factory.mktemp("client-wheel")
    wheel = build_wheel(ROOT / "client", tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            WHEELHOUSE,
            wheel,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    yield venv


def test_the_client_wheel_runs_gmp_in_a_venv_of_its_own(client_venv: Path) -> None:
    isolated = {"PATH": str(client_venv / "bin"), "COLUMNS": "100"}  # no PYTHONPATH: only the venv's packages
    usage = subprocess.run(
        [client_venv / "bin" / "gmp", "--help"], capture_output=True, text=True, env=isolated, timeout=60
    )
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: gmp")
    assert "test-smtp" in usage.stdout
    imported = subprocess.run(
        [client_venv / "bin" / "python", "-c", "import mailproxy_client; print(mailproxy_client.__file__)"],
        capture_output=True,
        text=True,
        env=isolated,
        cwd=client_venv,  # not the repository: its packages must not be importable from the working directory
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()).is_relative_to(client_venv)


def test_the_client_venv_has_no_server_package(client_venv: Path) -> None:
    paths = subprocess.run(
        [client_venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    site_packages = Path(paths.stdout.strip())
    installed = {path.name.removesuffix(".py") for path in site_packages.iterdir()}
    assert "mailproxy_client" in installed
    assert installed & REPOSITORY_PACKAGES == set()
    assert not any(path.suffix == ".pth" for path in site_packages.iterdir()), "no path hooks into a checkout"


def test_the_server_wheel_holds_only_mailproxy_and_mailproxy_local(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT, tmp_path)
    assert top_level_entries(wheel) == SERVER_PACKAGES
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requirements = {
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    }
    assert "fastapi==0.165.0" in requirements  # requirements.txt, the runtime dependencies
    assert any(r.startswith("moto[server]") and 'extra == "local"' in r for r in requirements)
    assert any(r.startswith("aws-cdk-lib") and 'extra == "cdk"' in r for r in requirements)
    assert any(r.startswith("pytest") and 'extra == "dev"' in r for r in requirements)
