"""Notebook 1 in a real browser: JupyterLab runs it top to bottom, with no error, and draws a plot.

nbval checks the notebooks' code; this test checks what a learner sees. It starts
JupyterLab on loopback (a free port, a random token) over a *copy* of notebooks/,
with the outputs stripped, opens notebook 1 in headless Chromium driven by
Playwright, clicks Run > Run All Cells, waits until the kernel is idle and every
code cell has its execution count, and then looks at the page.

Error outputs: JupyterLab 4 renders an ``error`` output exactly like a stderr
stream (``div.jp-RenderedText.jp-OutputArea-output`` with
``data-mime-type="application/vnd.jupyter.stderr"``), so no CSS selector tells a
traceback from a warning. The output *model* does: its ``output_type`` is
``error``. The server runs with ``expose_app_in_browser`` so the test can read
each cell's outputs through ``window.jupyterapp``, next to the DOM they render.

Chromium is Debian's (``/usr/bin/chromium``); Playwright's own browser download
is never used. Without Chromium or the ``playwright`` package the test skips,
but it *fails* when ``WTSIM_REQUIRE_BROWSER=1`` (CI sets it), like the
real-server tests and ``WTSIM_REQUIRE_SERVERS``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from servers import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = "01-write-through-basics.ipynb"

# Chromium as root needs --no-sandbox; with no network, keep it from phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# JupyterLab user settings for the test: no autosave, every cell in the DOM
# (no windowing), no news or update pop-ups over the page.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
SERVER_START_S = 60
KERNEL_START_S = 60
RUN_ALL_S = 120

# One entry per code cell of the notebook's panel: the model's execution count and
# outputs, and what the DOM shows for them.
CELL_STATES_JS = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  if (!panel || !panel.sessionContext.session || !panel.sessionContext.session.kernel) return null;
  const kernel = panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map((cell, index) => ({cell, index}))
    .filter(({cell}) => cell.model.type === 'code');
  return {
    kernel: kernel.status,
    connection: kernel.connectionStatus,
    cells: cells.map(({cell, index}) => {
      const outputs = cell.model.outputs.toJSON();
      const shown = cell.outputArea.widgets;
      return {
        index,
        count: cell.model.executionCount,
        prompt: (cell.node.querySelector('.jp-InputPrompt') || {}).textContent || '',
        errors: outputs.flatMap((out, i) => out.output_type !== 'error' ? [] : [{
          name: `${out.ename}: ${out.evalue}`,
          shown: shown[i] ? shown[i].node.innerText.slice(-1500) : '(not rendered)',
        }]),
        images: Array.from(cell.node.querySelectorAll('.jp-OutputArea-output img'))
          .filter(img => img.complete && img.naturalWidth > 0).length,
      };
    }),
  };
}
"""


def find_chromium() -> str | None:
    """Debian's chromium: on PATH, or at /usr/bin/chromium."""
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def browser_unavailable(why: str) -> None:
    """Skip, or fail when WTSIM_REQUIRE_BROWSER=1 says the browser must be there."""
    if os.environ.get("WTSIM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why} (WTSIM_REQUIRE_BROWSER=1; install Debian's chromium and wtsim[browser])")
    pytest.skip(why)


@pytest.fixture
def chromium() -> str:
    """Path of a Chromium that Playwright can drive."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        browser_unavailable(f"playwright is not installed (pip install -e '.[browser]'): {exc}")
    path = find_chromium()
    if path is None:
        browser_unavailable("no chromium at /usr/bin/chromium or on PATH (apt-get install chromium)")
    return path


def _copy_notebooks(dest: Path) -> None:
    """notebooks/ copied to dest, with notebook 1's outputs and counts cleared."""
    shutil.copytree(NOTEBOOKS, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    path = dest / NOTEBOOK
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


class LabServer:
    """A JupyterLab server in its own process group, in this Python's environment."""

    def __init__(self, workdir: Path, root: Path) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyter-server.log"
        jupyter = workdir / "jupyter"
        settings = jupyter / "lab-settings"
        for plugin, values in LAB_SETTINGS.items():
            file = settings / f"{plugin}.jupyterlab-settings"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(values), encoding="utf-8")
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)  # CI's Agg would stop the kernel's inline plots
        env.update(
            JUPYTER_CONFIG_DIR=str(jupyter / "config"),  # no user config, in or out
            JUPYTER_DATA_DIR=str(jupyter / "data"),  # kernels: this environment's only
            JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
            JUPYTER_PREFER_ENV_PATH="1",
            IPYTHONDIR=str(jupyter / "ipython"),
        )
        # sys.executable runs the server, and its kernelspec's "python" means sys.executable:
        # the kernel is this environment's, where wtsim is installed.
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.allow_root=True", "--ServerApp.terminals_enabled=False",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={jupyter / 'workspaces'}",
            "--LabApp.expose_app_in_browser=True",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def api(self, path: str, method: str = "GET", timeout: float = 5) -> bytes:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def wait_ready(self) -> None:
        """Until /api/status answers to the token; fail with the log if the server dies or stalls."""
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                json.loads(self.api("/api/status", timeout=2))
                return
            except (OSError, ValueError):  # refused, reset, 403 before the token is set up
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within {SERVER_START_S} s:\n{self.log_tail()}")
                time.sleep(0.25)

    def stop(self) -> None:
        """Shut down kernels and server through the API; then SIGTERM, then SIGKILL the group."""
        if self.process.poll() is None:
            try:
                self.api("/api/shutdown", method="POST")
            except OSError:
                pass
        for sig, grace in ((None, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if sig is not None:
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
            try:
                self.process.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # anything the server left in its group (kernels have sessions of their own)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def lab(tmp_path) -> Iterator[LabServer]:
    """JupyterLab serving a stripped copy of notebooks/ from tmp_path; stopped afterwards."""
    root = tmp_path / "notebooks"
    _copy_notebooks(root)
    server = LabServer(tmp_path, root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(chromium: str) -> Iterator[Page]:
    """A fresh page of headless Debian Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def _wait_for(page, predicate, timeout_s: float, what: str, screenshot: Path):
    """Poll the cell states until predicate(states) holds; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = page.evaluate(CELL_STATES_JS, NOTEBOOK)
        if states is not None and predicate(states):
            return states
        if time.monotonic() > deadline:
            page.screenshot(path=screenshot)
            pytest.fail(f"{what} within {timeout_s:.0f} s; page in {screenshot}; last state: {states}")
        time.sleep(0.5)


def _finished(states) -> bool:
    if any(cell["errors"] for cell in states["cells"]):
        return True  # the kernel aborts the cells after an error: stop waiting, report it
    return states["kernel"] == "idle" and all(cell["count"] is not None for cell in states["cells"])


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_notebook_1_runs_in_jupyterlab(page, lab, tmp_path):  # page first: skips before a server starts
    """Run All Cells in JupyterLab: every cell runs once, in order, none errs, and a plot shows."""
    screenshot = tmp_path / "notebook-1.png"
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
    before = _wait_for(
        page,
        lambda s: s["connection"] == "connected" and s["kernel"] == "idle",
        KERNEL_START_S, "the notebook's kernel did not start", screenshot,
    )  # fmt: skip
    assert before["cells"], "notebook 1 has no code cells"
    assert all(cell["count"] is None for cell in before["cells"]), "outputs were not cleared"

    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    after = _wait_for(page, _finished, RUN_ALL_S, "Run All Cells did not finish", screenshot)

    images = page.locator(".jp-OutputArea-output img")
    if images.count():
        images.first.scroll_into_view_if_needed()  # the screenshot shows the plot
    page.screenshot(path=screenshot)

    errors = [f"cell {c['index']}: {e['name']}\n{e['shown']}" for c in after["cells"] for e in c["errors"]]
    assert not errors, "error output in notebook 1 (page in %s):\n%s" % (screenshot, "\n\n".join(errors))
    counts = [cell["count"] for cell in after["cells"]]
    assert counts == list(range(1, len(counts) + 1)), f"cells did not each run once, in order: {counts}"
    prompts = {cell["prompt"] for cell in after["cells"]}
    assert all(p.strip("[]: ").isdigit() for p in prompts), f"prompts on the page: {sorted(prompts)}"
    assert any(cell["images"] for cell in after["cells"]), f"no cell shows a plot (an <img>); page in {screenshot}"


def test_missing_browser_skips_or_fails(monkeypatch):
    """Without Chromium the browser test skips, unless WTSIM_REQUIRE_BROWSER=1 makes it fail."""
    monkeypatch.delenv("WTSIM_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception):
        browser_unavailable("no chromium")
    monkeypatch.setenv("WTSIM_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="WTSIM_REQUIRE_BROWSER=1"):
        browser_unavailable("no chromium")
