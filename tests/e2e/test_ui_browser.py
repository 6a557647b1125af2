"""The loop page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no browser download):
it loads with no console error and no request outside the server's origin, shows the champion, the canary
staircase and the events of a scripted loop run, fits a phone's width, and a rollback through the page
changes the deployment only with the admin token."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from driftloop.registry import deployments
from tests.integration.ui_support import TOKEN, LoopHistory, loop_history, serving

history = loop_history
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def until(page: Any, predicate: str, timeout: float = 30.0) -> None:
    """Poll `predicate` (a JavaScript expression) until true. Not wait_for_function: that evaluates its
    string with eval inside the page, which the page's Content-Security-Policy (rightly) forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({predicate})"):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {predicate}"
        page.wait_for_timeout(100)


def _restore(history: LoopHistory) -> None:
    """Put the scripted canary back (other tests of the session read the same stores)."""
    steps = history.cfg.loop.rollout.steps
    if history.stores.metadata.get_deployment(history.cfg.project.name).challenger is None:
        deployments.set_challenger(history.stores, history.challenger, reason="scripted challenger")
    deployments.start_canary(history.stores, history.challenger, weight=steps[0], reason="scripted canary")
    deployments.advance_canary(history.stores, step=1, weight=steps[1], reason="scripted canary step")


def test_page_shows_the_loop_and_acts_only_with_the_token(history: LoopHistory, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).exists(), "headless Chromium is needed: the Debian package `chromium`"
    steps = history.cfg.loop.rollout.steps
    with serving(history.cfg) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768}, timezone_id="Europe/Berlin")
            problems: list[str] = []
            outside: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(base + "/") else outside.append(r.url))

            page.goto(f"{base}/ui", wait_until="networkidle")
            until(page, "document.getElementById('champion-version').textContent.startsWith('v')")
            assert page.text_content("#champion-version") == f"v{history.champion}"
            assert page.text_content("#challenger-version") == f"v{history.challenger}"
            # The staircase: the challenger's share went to the first canary step, then the second.
            until(page, "(document.getElementById('chart-staircase').data || []).length > 0")
            shares: list[Any] = page.evaluate("document.getElementById('chart-staircase').data[0].y")
            assert [round(s, 6) for s in shares[-3:-1]] == [100 * steps[0], 100 * steps[1]]
            assert page.locator("#canary-steps li.current").text_content() == f"{100 * steps[1]:.0f} %"
            kinds = page.locator("#events tbody tr").evaluate_all("rows => rows.map(r => r.dataset.kind)")
            assert "canary_started" in kinds and "model_registered" in kinds
            assert "Europe/Berlin" in (page.text_content("#refreshed") or "")
            # The monitoring pass estimated the champion's metric before its labels: a dotted line with a band.
            until(page, "(document.getElementById('chart-perf').data || []).length > 0")
            estimated = page.evaluate(
                "document.getElementById('chart-perf').data.filter(t => t.name.endsWith('(estimated)'))"
                ".map(t => [t.name, t.line.dash, t.y.length, t.error_y.array.length])"
            )
            assert [e[1:] for e in estimated] == [["dot", 1, 1]], estimated
            assert estimated[0][0] == f"v{history.champion} champion · accuracy (estimated)"
            shot = Path(os.environ.get("UI_SCREENSHOT") or tmp_path / "ui.png")  # docs/ui.png is one
            page.screenshot(path=str(shot), full_page=True)
            # An event's version opens its lineage and gate report; a request id is explained.
            page.locator("#events a.version").first.click()
            until(page, "document.getElementById('detail').textContent.includes('run_id')")
            page.fill("#explain-id", history.request_ids[0])
            page.click("#explain-form button")
            until(page, f"document.getElementById('detail').textContent.includes({history.request_ids[0]!r})")

            assert not problems, problems  # before acting: the refusals below log their 403
            dialogs: list[str] = []

            def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            page.on("dialog", accept)
            before = history.stores.metadata.get_deployment(history.cfg.project.name)
            page.click("#act-rollback")  # no token typed
            assert "Refused" in (page.text_content("#act-result") or "")
            page.fill("#token", "not-the-token")
            page.click("#act-rollback")
            until(page, "document.getElementById('act-result').textContent.includes('403')")
            after_refusals = history.stores.metadata.get_deployment(history.cfg.project.name)
            assert (
                after_refusals.revision == before.revision and after_refusals.challenger == history.challenger
            )

            page.fill("#token", TOKEN)
            page.click("#act-rollback")
            until(page, "document.getElementById('act-result').textContent.startsWith('Done')")
            assert dialogs and all(f"champion v{history.champion}" in d for d in dialogs)
            assert f"challenger v{history.challenger} leaves" in dialogs[-1]
            rolled = history.stores.metadata.get_deployment(history.cfg.project.name)
            assert rolled.revision == before.revision + 1
            assert (rolled.challenger, rolled.strategy) == (None, "single")

            # A phone's width: everything reflows into one column, nothing wider than the screen.
            page.set_viewport_size({"width": 390, "height": 844})
            # Plotly redraws its charts at the new width on the resize event (debounced): poll for it.
            until(page, "document.documentElement.scrollWidth <= 390", timeout=10)
            assert problems == [
                "Failed to load resource: the server responded with a status of 403 (Forbidden)"
            ], problems
            assert not outside, outside
        finally:
            browser.close()
            _restore(history)
