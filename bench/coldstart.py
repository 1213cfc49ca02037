"""Cold start: the import time of each handler module in a fresh interpreter (`python -X importtime`).

Measured as the summed cumulative import time of the top-level entries the import statement creates
(`functions`, `functions.sender`, `functions.sender.handler`), median of several runs; also the wall time of
the whole subprocess minus that of an empty interpreter. Run with the environment of the deployed functions
(`GMP_MODE=aws`: the Powertools tracer is enabled and imports the X-Ray SDK), and in local mode for comparison.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULES = {
    "api": "functions.api.handler",
    "sender": "functions.sender.handler",
    "reporter": "functions.reporter.handler",
    "stream_reporter": "functions.stream_reporter.handler",
    "jobs": "functions.jobs.handler",
}
TARGETS_SECONDS = {"api": 0.5, "sender": 0.3, "reporter": 0.3, "stream_reporter": 0.3, "jobs": 0.3}


def present_modules() -> tuple[dict[str, str], list[str]]:
    """The handlers of MODULES that exist in this tree, and the names of those that do not (yet)."""
    present, missing = {}, []
    for name, module in MODULES.items():
        if (ROOT / (module.replace(".", "/") + ".py")).is_file():
            present[name] = module
        else:
            missing.append(name)
    return present, missing


def _environment(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMP_", "AWS_", "POWERTOOLS_"))}
    env.update(
        GMP_MODE=mode,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_LAMBDA_FUNCTION_NAME="bench",  # Powertools and X-Ray read it; nothing is called at import
        PYTHONPATH=str(ROOT),
    )
    return env


def _run(code: str, env: dict[str, str], importtime: bool) -> tuple[float, str]:
    args = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code]
    started = time.perf_counter()
    finished = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{finished.stderr[-2000:]}")
    return wall, finished.stderr


def import_seconds(stderr: str, module: str) -> float:
    """Summed cumulative time (s) of the top-level importtime entries of `module` and its parent packages."""
    wanted = {".".join(module.split(".")[: i + 1]) for i in range(module.count(".") + 1)}
    total_us = 0
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        if name.strip() in wanted and name == " " + name.strip():  # top level: one space after the bar
            total_us += int(parts[1])
    return total_us / 1e6


def measure(runs: int = 5, modes: tuple[str, ...] = ("aws", "local")) -> dict[str, Any]:
    modules, missing = present_modules()
    results: dict[str, Any] = {"runs": runs, "python": sys.version.split()[0], "missing": missing}
    for mode in modes:
        env = _environment(mode)
        empty = statistics.median(_run("pass", env, importtime=False)[0] for _ in range(runs))
        per_module: dict[str, Any] = {}
        for name, module in modules.items():
            imports, walls = [], []
            for _ in range(runs):
                _, stderr = _run(f"import {module}", env, importtime=True)
                imports.append(import_seconds(stderr, module))
                walls.append(_run(f"import {module}", env, importtime=False)[0] - empty)
            per_module[name] = {
                "module": module,
                "import_s_median": statistics.median(imports),
                "import_s_all": imports,
                "wall_minus_empty_s_median": statistics.median(walls),
                "target_s": TARGETS_SECONDS[name],
            }
        results[mode] = {"empty_interpreter_s": empty, "modules": per_module}
    return results


def heaviest_imports(module: str, mode: str = "aws", top: int = 12) -> list[tuple[str, float]]:
    """The slowest nested imports (cumulative), to say where the time goes."""
    _, stderr = _run(f"import {module}", _environment(mode), importtime=True)
    rows = []
    for line in stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            if depth <= 2:
                rows.append((name.strip(), int(parts[1]) / 1e6))
    rows.sort(key=lambda row: -row[1])
    return rows[:top]
