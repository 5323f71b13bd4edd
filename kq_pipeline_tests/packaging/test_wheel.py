"""A non-editable install works: the wheel built from this tree, installed into a fresh virtualenv
outside it, runs `kq db init`, a one-cluster load and `kq demo --no-ui` from a folder of its own.

The fresh virtualenv gets only the wheel (`pip install --no-deps`); the dependencies are this
environment's, reached through a .pth file that lists this environment's site-packages as plain
paths (so no .pth file of theirs, such as an editable install's finder, runs there). Its own
site-packages comes first on sys.path, so `kq_pipeline` is imported from the wheel, which each
test checks. With KQ_TEST_WHEEL set (.ci/other-pythons builds the wheel once and runs these tests
on the other Python versions from a copy of kq_pipeline_tests), that wheel is used instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.conftest import REPO
from kq_pipeline_tests.postgres_fixtures import private_tmp_dir

WHEEL_ENV = "KQ_TEST_WHEEL"
# What the build reads: the project metadata, the readme it names, the package (with package-data).
BUILD_INPUTS = ("pyproject.toml", "README.md", "kq_pipeline")
REGISTRY_FILES = {"schema.json", "custom_tables.json", "go_types.json"}  # kq_pipeline/registry/__init__.py
PODS = 40


def package_files(tree: Path) -> set[str]:
    """Paths (relative to `tree`) of everything under tree/kq_pipeline a wheel should carry."""
    return {
        p.relative_to(tree).as_posix()
        for p in (tree / "kq_pipeline").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def build_wheel(source: Path, work: Path) -> Path:
    """Build the wheel from a copy of `source`'s build inputs, leaving `source` untouched (setuptools
    writes build/ and *.egg-info/ beside its input, and a stale build/lib would end up in the wheel)."""
    src = work / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (source / name).is_dir():
            shutil.copytree(source / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source / name, src / name)
    dist = work / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist)]
    if backend_installed():  # it comes with the test extras: nothing to download
        cmd += ["--no-build-isolation", "--no-index"]
    run([*cmd, str(src)], timeout=120)
    (wheel,) = dist.glob("kq_pipeline-*.whl")
    return wheel


def backend_installed() -> bool:
    """[build-system]'s requirements (setuptools>=68, wheel) are in this environment."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 68 and bool(
            importlib.metadata.version("wheel")
        )
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def run(cmd: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{cmd} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc


@dataclass(frozen=True)
class Install:
    wheel: Path
    source: Path | None  # the tree the wheel was built from, when known
    venv: Path
    work: Path  # a folder outside the source tree to run from

    @property
    def kq(self) -> str:
        return str(self.venv / "bin" / "kq")

    def env(self, **extra: str) -> dict[str, str]:
        """A user's shell with the virtualenv activated: none of this session's kq, Dagster or
        Python path settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KQ_", "DAGSTER_", "PYTHON")) and k != "VIRTUAL_ENV"
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        return {**env, **extra}


@pytest.fixture(scope="module")
def installed() -> Iterator[Install]:
    with private_tmp_dir("kq-test-wheel-") as work:
        given = os.environ.get(WHEEL_ENV)
        if given:
            wheel = Path(given).resolve()
            assert wheel.is_file(), f"{WHEEL_ENV}={given} is not a file"
            source = REPO if (REPO / "kq_pipeline").is_dir() else None
        else:
            wheel, source = build_wheel(REPO, work), REPO
        venv = work / "venv"
        run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
        py = venv / "bin" / "python"
        # pip --python: this environment's pip installs into the new one, which needs no pip of its own
        pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet"]
        run([*pip, "--no-deps", "--no-index", str(wheel)], timeout=120)
        where = "import sysconfig; print(sysconfig.get_path('purelib'))"
        purelib = run([str(py), "-c", where]).stdout.strip()
        shared = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (Path(purelib) / "_kq_test_dependencies.pth").write_text("".join(f"{p}\n" for p in shared))
        cwd = work / "elsewhere"
        cwd.mkdir()
        yield Install(wheel, source, venv, cwd)


def test_the_wheel_holds_the_whole_package_with_its_data_files(installed: Install) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert re.search(r"^kq = kq_pipeline\.cli:main$", whl.read(entry_points).decode(), re.M)
    carried = {n for n in names if n.startswith("kq_pipeline/")}
    assert {f"kq_pipeline/registry/{name}" for name in REGISTRY_FILES} <= carried
    assert not {n for n in names if n.startswith("kq_pipeline_tests/")}
    if installed.source is None:
        pytest.skip(f"{WHEEL_ENV} names a wheel and no source tree is beside the tests to compare it with")
    assert carried == package_files(installed.source)


def test_kq_imports_from_the_wheel_not_from_the_source_tree(installed: Install) -> None:
    probe = "import kq_pipeline, kq_pipeline.registry as r; print(kq_pipeline.__file__); print(len(r.TABLES))"
    out = run([str(installed.venv / "bin" / "python"), "-c", probe], cwd=installed.work, env=installed.env())
    location, tables = out.stdout.split()
    assert Path(location).resolve().is_relative_to(installed.venv.resolve()), location
    assert int(tables) == len(TABLES)


def test_db_init_and_a_one_cluster_load_run_from_the_installed_wheel(
    installed: Install, pg_empty_dsn: str
) -> None:
    home = installed.work / "load"
    env = installed.env(
        KQ_DATABASE_URL=pg_empty_dsn, KQ_HOME=str(home / "kq"), DAGSTER_HOME=str(home / "dagster")
    )

    def kq(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run([installed.kq, *args], cwd=installed.work, env=env, timeout=timeout)

    kq("db", "init")
    with serve_fleet([ClusterSpec(name="wheel-0", seed=3, pods=PODS)]) as fleet:
        kubeconfig = fleet.write_kubeconfig(home / "kubeconfig.yaml")
        kq("clusters", "add", "--kubeconfig", str(kubeconfig))
        out = kq("load")
    lines = (out.stdout + out.stderr).splitlines()
    assert "Traceback" not in out.stdout + out.stderr
    assert any(re.fullmatch(r"wheel-0 +[\d,]+ rows +\d+\.\ds  ok", line) for line in lines), lines
    assert re.fullmatch(r"1 cluster\(s\) loaded, 0 failed in \d+\.\ds", lines[-1]), lines
    with psycopg.connect(pg_empty_dsn) as conn:
        pods = conn.execute("SELECT cluster_name, count(*) FROM kubernetes_pods GROUP BY 1").fetchall()
        loads = conn.execute("SELECT count(*) FROM kq_meta.loads WHERE status = 'success'").fetchone()
    assert pods == [("wheel-0", PODS)]
    assert loads == (len(TABLES),)


def test_kq_demo_runs_from_the_installed_wheel(installed: Install) -> None:
    home = installed.work / "demo"
    # no KQ_DATABASE_URL: the demo's embedded PostgreSQL, in its own KQ_HOME
    env = installed.env(KQ_HOME=str(home / "kq"), DAGSTER_HOME=str(home / "dagster"))
    demo = [installed.kq, "demo", "--no-ui", "--clusters", "1"]
    try:
        out = run(demo, cwd=installed.work, env=env, timeout=240)
    finally:
        if (home / "kq" / "postgres").exists():
            run([installed.kq, "db", "stop"], cwd=installed.work, env=env)
    output = out.stdout + out.stderr
    assert "Traceback" not in output
    assert re.search(r"^1 cluster\(s\) loaded, 0 failed in \d+\.\ds$", output, re.M), output
