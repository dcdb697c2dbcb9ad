"""The wheel alone gives a working server: scripts, banner and demo ship inside the package (issue #7 §5).

The test builds the wheel from a copy of the sources (``pip wheel --no-deps --no-build-isolation``),
installs it with ``--no-deps --no-index`` into a fresh venv whose only other path is the test venv's
site-packages (a ``.pth`` line: the dependencies, never the sources), and starts ``jobpixel serve``
and ``jobpixel demo`` from that venv in an empty directory.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import SECRETS, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the jobpixel wheel installed; returns its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "pixel_server", src / "pixel_server", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")],
        check=True,
        timeout=180,
    )
    [wheel] = (tmp / "dist").glob("jobpixel-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the dependencies from the test venv, offline; its editable jobpixel finder is not run from here
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=180,
    )
    where = subprocess.run(
        [str(python), "-c", "import pixel_server; print(pixel_server.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp,
    ).stdout
    assert where.startswith(purelib), where  # the installed copy, not the sources
    return venv / "bin"


CONFIG = """
[server]
data_dir = "{data}"
[partners.p]
name = "P"
[sites.s]
partner = "p"
origins = ["https://jobs.example.no"]
ad_pattern = "/stilling/{{ad}}"
"""


def start(argv: list[str], cwd: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{argv[1]} exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"{argv[1]} did not answer within 60 s")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "cfg.toml").write_text(CONFIG.format(data=tmp_path / "data"))
    yield tmp_path


def test_installed_wheel_serves_the_pixel_and_the_banner(installed: Path, workdir: Path) -> None:
    port = free_port()
    env = {"PATH": f"{installed}:/usr/bin:/bin", "HOME": str(workdir), **SECRETS}
    argv = [str(installed / "jobpixel"), "serve", "--config", "cfg.toml", "--port", str(port)]
    proc = start(argv, workdir, port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        pixel, banner = httpx.get(base + "/p.js"), httpx.get(base + "/b.js")
        assert pixel.status_code == 200 and "jobpixel" in pixel.text and len(pixel.content) > 1000
        assert banner.status_code == 200 and "__jpb" in banner.text
        site = httpx.get(base + "/s/s.json").json()
        assert site["ad_pattern"] == "^/stilling/([^/?#]+)(?:[?#]|$)"
    finally:
        stop(proc)


def test_installed_wheel_runs_the_demo_and_prints_the_ops_token(installed: Path, workdir: Path) -> None:
    port = free_port()
    env = {"PATH": f"{installed}:/usr/bin:/bin", "HOME": str(workdir)}  # no secrets: the demo makes them
    argv = [str(installed / "jobpixel"), "demo", "--port", str(port)]
    proc = start(argv, workdir, port, env)
    out = ""
    try:
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(base + "/demo/")
        assert page.status_code == 200 and "/p.js" in page.text
        token = (workdir / "var" / "demo" / "ops-token").read_text().strip()
        assert httpx.get(base + "/metrics").status_code == 401
        ops = {"Authorization": f"Bearer {token}"}
        assert httpx.get(base + "/metrics", headers=ops).status_code == 200
    finally:
        out = stop(proc)
    assert f"Bearer {token}" in out and "var/demo/ops-token" in out
