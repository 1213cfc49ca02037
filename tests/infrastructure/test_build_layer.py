"""The Docker-free layer build: the right pip target, skipped when up to date (nothing is installed here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from stacks import build_layer
from stacks.mail_proxy_stack import MailProxyStack
from stacks.settings import LAMBDA_RUNTIME, Settings, SettingsError


class FakePip:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str], check: bool) -> None:
        assert check
        self.calls.append(command)
        target = Path(command[command.index("--target") + 1])
        (target / "fastapi").mkdir(parents=True)
        (target / "bin").mkdir()


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("fastapi==0.165.0\n")
    return path


def _build(requirements: Path, pip: FakePip, arch: str = "x86_64", **kwargs: Any) -> Path:
    return build_layer.ensure_layer(
        arch,
        requirements=requirements,
        out_root=requirements.parent / "build",
        runner=pip,
        log=lambda _: None,
        **kwargs,
    )


def test_pip_installs_manylinux_wheels_for_the_lambda_python() -> None:
    command = build_layer.pip_command("x86_64", Path("requirements.txt"), Path("out/python"))
    joined = " ".join(command)
    assert "--platform manylinux2014_x86_64" in joined
    assert "--only-binary=:all:" in command
    assert f"--python-version {build_layer.PYTHON_VERSION}" in joined
    assert "--implementation cp" in joined
    assert "--target out/python" in joined
    assert "-r requirements.txt" in joined
    arm = " ".join(build_layer.pip_command("arm64", Path("r.txt"), Path("t")))
    assert "--platform manylinux2014_aarch64" in arm


def test_layer_python_version_matches_the_function_runtime() -> None:
    assert LAMBDA_RUNTIME.name == f"python{build_layer.PYTHON_VERSION}"


def test_build_writes_python_dir_and_stamp(requirements: Path) -> None:
    pip = FakePip()
    directory = _build(requirements, pip)
    assert directory.name == "layer-x86_64"
    assert (directory / "python" / "fastapi").is_dir()
    assert not (directory / "python" / "bin").exists()
    assert (directory / build_layer.STAMP_FILE).read_text().strip() == build_layer.stamp_for("x86_64", requirements)
    assert not directory.with_name("layer-x86_64.tmp").exists()


def test_build_is_skipped_when_requirements_are_unchanged(requirements: Path) -> None:
    pip = FakePip()
    _build(requirements, pip)
    _build(requirements, pip)
    assert len(pip.calls) == 1


def test_build_reruns_when_requirements_change_or_forced(requirements: Path) -> None:
    pip = FakePip()
    _build(requirements, pip)
    requirements.write_text("fastapi==0.165.0\nmangum==0.22.0\n")
    _build(requirements, pip)
    _build(requirements, pip, force=True)
    assert len(pip.calls) == 3


def test_architectures_build_separate_directories(requirements: Path) -> None:
    pip = FakePip()
    assert _build(requirements, pip, "x86_64") != _build(requirements, pip, "arm64")
    assert len(pip.calls) == 2


def test_failed_pip_leaves_the_previous_layer_in_place(requirements: Path) -> None:
    directory = _build(requirements, FakePip())
    requirements.write_text("nonexistent-package==1\n")

    def failing(command: list[str], check: bool) -> None:
        raise RuntimeError("pip failed")

    with pytest.raises(RuntimeError):
        _build(requirements, failing)  # type: ignore[arg-type]
    assert (directory / "python" / "fastapi").is_dir()


def test_unknown_architecture_is_refused(requirements: Path) -> None:
    with pytest.raises(ValueError, match="architecture"):
        _build(requirements, FakePip(), "sparc")


def test_stack_refuses_a_missing_layer_directory_with_instructions(tmp_path: Path) -> None:
    app = App()
    settings = Settings.parse({"layer_dir": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match=r"stacks\.build_layer"):
        MailProxyStack(app, "Missing", settings=settings)
