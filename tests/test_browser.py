"""End-to-end checks of the annotation page in a real headless Chromium.

The `serve` fixture (tests/conftest.py) runs the real engine and FastAPI app on a free port.
Skipped, with the reason, when Playwright or a Chromium executable is missing.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import logging
import math
import os
import re
import shutil
import threading
import time

import pytest

# CI installs Chromium and sets this, so there a missing browser fails instead of skipping.
REQUIRED = os.environ.get("RETRAIN_LOOP_REQUIRE_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        raise RuntimeError(f"browser test required but {reason}")
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    _unavailable("playwright (python package) is not installed")

httpx = pytest.importorskip("httpx", reason="httpx is needed to query the API")
np = pytest.importorskip("numpy")


def _find_chromium() -> str | None:
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = _find_chromium()
if CHROMIUM is None:
    _unavailable(
        "no Chromium executable (looked for /usr/bin/chromium, /usr/bin/chromium-browser, "
        "chromium on PATH)"
    )

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
COLOUR_LABELS = ["red", "green", "blue"]

expect.set_options(timeout=TIMEOUT_MS)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.js_errors = errors  # type: ignore[attr-defined]
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


def colour_rows(n: int = 200, seed: int = 0) -> list[dict]:
    """Distinct colours whose brightest channel is unique, so the labelling rule is unambiguous."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    seen: set[tuple[int, int, int]] = set()
    while len(rows) < n:
        r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
        top = max(r, g, b)
        if (r, g, b) in seen or [r, g, b].count(top) > 1:
            continue
        seen.add((r, g, b))
        rows.append(
            {"id": f"c{len(rows):04d}", "r": r, "g": g, "b": b, "hex": f"#{r:02x}{g:02x}{b:02x}"}
        )
    return rows


def brightest_label(row: dict) -> str:
    channels = [row["r"], row["g"], row["b"]]
    return COLOUR_LABELS[channels.index(max(channels))]


def stats(base_url: str) -> dict:
    response = httpx.get(base_url + "/api/stats", timeout=5.0)
    response.raise_for_status()
    return response.json()


def wait_for_stats(base_url: str, check, timeout: float = TIMEOUT_MS / 1000) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = stats(base_url)
        if check(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"stats never satisfied the check; last: {current}")
        time.sleep(0.1)


def open_page(page, base_url: str, session: str) -> None:
    page.goto(f"{base_url}/?session={session}")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")


def shown_row(page, rows_by_hex: dict) -> dict:
    """The pool row on screen, checked against the swatch's computed colour."""
    hex_text = page.locator("#swatch-hex").inner_text().strip().lower()
    assert hex_text in rows_by_hex, f"swatch shows {hex_text!r}, not a pool row"
    row = rows_by_hex[hex_text]
    expect(page.locator("#swatch")).to_have_css(
        "background-color", f"rgb({row['r']}, {row['g']}, {row['b']})"
    )
    return row


def wait_for_next(page, previous_hex: str) -> None:
    expect(page.locator("#swatch-hex")).not_to_have_text(previous_hex)


def label_with_keys(page, row: dict) -> str:
    label = brightest_label(row)
    page.keyboard.press(str(COLOUR_LABELS.index(label) + 1))
    expect(page.locator(f'#labels button.label[data-label="{label}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )
    expect(page.locator("#labels button.label.selected")).to_have_count(1)
    return label


def accept_shown(page, rows_by_hex: dict, n: int) -> list[dict]:
    """Answer the next ``n`` rows on screen with their label's key and Enter; returns them."""
    rows = []
    for _ in range(n):
        row = shown_row(page, rows_by_hex)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])
        rows.append(row)
    return rows


def is_answers_post(response) -> bool:
    return response.url.endswith("/api/answers") and response.request.method == "POST"


# ---------------------------------------------------------------- tests


def test_colour_view_keyboard_batch_skip_and_undo(serve, page):
    rows = colour_rows(200, seed=0)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(
        rows,
        COLOUR_LABELS,
        view="colour",
        features=["r", "g", "b"],
        batch_size=5,
        dataset="colours",
    )
    open_page(page, base, "kb-test")

    expect(page.locator("#dataset")).to_have_text("colours")
    expect(page.locator("#labels button.label")).to_have_count(3)
    for i, label in enumerate(COLOUR_LABELS):
        button = page.locator(f'#labels button.label[data-label="{label}"]')
        expect(button).to_contain_text(str(i + 1))
        expect(button).to_contain_text(label)
    box = page.locator("#swatch").bounding_box()
    assert box and box["width"] >= 240 and box["height"] >= 240, box
    expect(page.locator("#guess")).to_have_text("no model yet")  # cold start
    expect(page.locator("#labels button.label.selected")).to_have_count(0)

    # Enter with nothing selected does nothing but hint.
    first = shown_row(page, by_hex)
    page.keyboard.press("Enter")
    expect(page.locator("#hint")).not_to_be_empty()
    expect(page.locator("#swatch-hex")).to_have_text(first["hex"])
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")

    # A whole batch with the keyboard only: digit, then Enter. The fifth answer fills the batch.
    shown: list[str] = []
    for i in range(5):
        row = shown_row(page, by_hex)
        assert row["hex"] not in shown, "a task was shown twice"
        shown.append(row["hex"])
        label_with_keys(page, row)
        if i < 4:
            page.keyboard.press("Enter")
            wait_for_next(page, row["hex"])
            expect(page.locator("#unsaved")).to_have_text(f"{i + 1} unsaved")
        else:
            with page.expect_response(is_answers_post) as posted:
                page.keyboard.press("Enter")
            assert posted.value.ok, posted.value.status
            wait_for_next(page, row["hex"])

    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    expect(page.locator("body")).to_have_attribute("data-pending-posts", "0")
    s = stats(base)
    assert s["n_annotations"] == 5, s
    assert sum(s["per_label"].get(label, 0) for label in COLOUR_LABELS) == 5, s
    expect(page.locator("#stats-total")).to_have_text("5")
    s = wait_for_stats(base, lambda st: st["model_round"] >= 1)
    expect(page.locator("#stats-round")).not_to_have_text("0")

    # Space skips: stored as "ignore", which counts as an annotation.
    skipped = shown_row(page, by_hex)
    assert skipped["hex"] not in shown
    page.keyboard.press("Space")
    wait_for_next(page, skipped["hex"])
    expect(page.locator("#unsaved")).to_have_text("1 unsaved")
    with page.expect_response(is_answers_post) as posted:
        page.locator("#save").click()
    assert posted.value.ok
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    wait_for_stats(base, lambda st: st["n_annotations"] == 6)
    expect(page.locator("#stats-total")).to_have_text("6")

    # Undo of an answer still in the outbox: it leaves the outbox, the task and its choice come back.
    current = shown_row(page, by_hex)
    chosen = label_with_keys(page, current)
    page.keyboard.press("Enter")
    wait_for_next(page, current["hex"])
    expect(page.locator("#unsaved")).to_have_text("1 unsaved")
    page.keyboard.press("Backspace")
    expect(page.locator("#swatch-hex")).to_have_text(current["hex"])
    shown_row(page, by_hex)
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    expect(page.locator("#labels button.label.selected")).to_have_attribute("data-label", chosen)

    # Undo again reaches the skipped (already posted) task; answering it again replaces the old answer.
    page.keyboard.press("Backspace")
    expect(page.locator("#swatch-hex")).to_have_text(skipped["hex"])
    shown_row(page, by_hex)
    label_with_keys(page, skipped)
    page.keyboard.press("Enter")
    expect(page.locator("#swatch-hex")).to_have_text(
        current["hex"]
    )  # the undone task is next again
    expect(page.locator("#unsaved")).to_have_text("1 unsaved")
    with page.expect_response(is_answers_post) as posted:
        page.locator("#save").click()
    assert posted.value.ok
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    expect(page.locator("body")).to_have_attribute("data-pending-posts", "0")
    s = stats(base)
    assert s["n_annotations"] == 6, f"re-answering a task must replace its answer: {s}"

    assert page.js_errors == []


def test_record_view_renders_markup_as_text(serve, page):
    rows = [
        {"id": "x1", "x": 0.5, "note": "<img src=x onerror=alert(1)>", "html": "<b>bold</b>"},
        {"id": "x2", "x": 1.5, "note": "<img src=x onerror=alert(2)>", "html": "<b>bold</b>"},
    ]
    base = serve(rows, ["yes", "no"], view="record", features=["x"], batch_size=2)
    open_page(page, base, "xss-test")

    record = page.locator("#record")
    expect(record).to_be_visible()
    expect(record).to_contain_text("<img src=x onerror=alert(")
    expect(record).to_contain_text("<b>bold</b>")
    expect(record).to_contain_text("note")
    expect(record.locator("img")).to_have_count(0)
    expect(record.locator("b")).to_have_count(0)
    assert page.locator("img[src='x']").count() == 0
    page.wait_for_timeout(200)  # give a would-be onerror handler the chance to fire
    assert page.dialogs == [], page.dialogs
    # Engine bookkeeping does not leak into the table.
    for hidden in ("_input_hash", "_task_hash", "options", "meta"):
        expect(record.locator("th", has_text=hidden)).to_have_count(0)
    assert page.js_errors == []


def test_failed_post_shows_banner_and_keeps_answers(serve, page):
    rows = colour_rows(60, seed=1)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)

    calls = {"n": 0}

    def fail_first(route):
        calls["n"] += 1
        if calls["n"] == 1:
            route.fulfill(
                status=500,
                content_type="application/json",
                body='{"detail": "disk on fire (test)"}',
            )
        else:
            route.fallback()

    page.route("**/api/answers", fail_first)
    open_page(page, base, "fail-test")

    accept_shown(page, by_hex, 5)

    banner = page.locator("#error-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("disk on fire (test)")
    expect(page.locator("body")).to_have_attribute("data-pending-posts", "0")
    expect(page.locator("#unsaved")).to_have_text("5 unsaved")
    assert calls["n"] == 1
    assert stats(base)["n_annotations"] == 0

    # Saving again sends the kept answers; the banner goes away.
    with page.expect_response(is_answers_post) as posted:
        page.locator("#save").click()
    assert posted.value.ok
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    expect(banner).to_be_hidden()
    assert wait_for_stats(base, lambda st: st["n_annotations"] == 5)["n_annotations"] == 5
    assert page.js_errors == []


def test_hiding_the_page_saves_the_outbox(serve, page):
    rows = colour_rows(40, seed=2)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "hide-test")
    accept_shown(page, by_hex, 2)
    expect(page.locator("#unsaved")).to_have_text("2 unsaved")

    # Headless tabs never become hidden on their own: fake the state and fire the event.
    with page.expect_response(is_answers_post) as posted:
        page.evaluate(
            """() => {
                Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
                document.dispatchEvent(new Event("visibilitychange"));
            }"""
        )
    assert posted.value.ok
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    assert wait_for_stats(base, lambda st: st["n_annotations"] == 2)["n_annotations"] == 2


def test_unsaved_answers_are_kept_for_the_next_visit(serve, page):
    rows = colour_rows(40, seed=3)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    page.route("**/api/answers", lambda route: route.fulfill(status=503, body="server away"))
    open_page(page, base, "reopen-test")
    accept_shown(page, by_hex, 3)
    page.locator("#save").click()
    expect(page.locator("#error-banner")).to_contain_text("server away")
    expect(page.locator("#unsaved")).to_have_text("3 unsaved")
    assert stats(base)["n_annotations"] == 0

    # The outbox is mirrored in localStorage: the next visit (here a second tab, since closing this
    # one would still send the answers on pagehide) stores it before asking for tasks.
    again = page.context.new_page()
    open_page(again, base, "reopen-test")
    expect(again.locator("#unsaved")).to_have_text("0 unsaved")
    assert wait_for_stats(base, lambda st: st["n_annotations"] == 3)["n_annotations"] == 3
    expect(again.locator("#stats-total")).to_have_text("3")


# ---------------------------------------------------------------- random checks, estimate, stop

AUDIT_NOTE = "Random check: the model's guess is hidden so it can't sway you."


def js_percent(value: float) -> int:
    """Math.round(value * 100), as the page rounds (Python's round() would round half to even)."""
    return math.floor(value * 100 + 0.5)


class ServedTasks:
    """Every task the page was served, by hex, read from its POST /api/questions responses."""

    def __init__(self, page):
        self._responses: list = []
        self._by_hex: dict[str, dict] = {}
        page.on("response", self._on_response)

    def _on_response(self, response) -> None:
        if "/api/questions" in response.url and response.request.method == "POST":
            self._responses.append(response)

    def __getitem__(self, hex_value: str) -> dict:
        while self._responses:
            for task in self._responses.pop(0).json()["tasks"]:
                self._by_hex[task["hex"]] = task
        return self._by_hex[hex_value]


def answer_via_api(base_url: str, engine, session: str, n: int) -> int:
    """Fetch up to ``n`` tasks for ``session``, answer each with its true label, wait for the refit."""
    got = httpx.post(f"{base_url}/api/questions", json={"session": session, "n": n}, timeout=10.0)
    got.raise_for_status()
    tasks = got.json()["tasks"]
    if not tasks:
        return 0
    answers = [dict(task, answer="accept", accept=[brightest_label(task)]) for task in tasks]
    posted = httpx.post(
        f"{base_url}/api/answers", json={"session": session, "answers": answers}, timeout=10.0
    )
    posted.raise_for_status()
    assert engine.wait_idle(30), "the refit did not finish"
    return len(tasks)


def test_audit_task_hides_the_guess_and_active_task_shows_it(serve, page):
    rows = colour_rows(200, seed=4)
    by_hex = {row["hex"]: row for row in rows}
    # Half the tasks are random checks once a model exists: they alternate with active ones.
    base = serve(
        rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5, audit=0.5
    )
    served = ServedTasks(page)
    posted: list[dict] = []
    page.on(
        "request",
        lambda request: (
            posted.extend(request.post_data_json["answers"])
            if request.url.endswith("/api/answers") and request.method == "POST"
            else None
        ),
    )
    open_page(page, base, "audit-test")
    guess = page.locator("#guess")
    selected = page.locator("#labels button.label.selected")

    sources: list[str] = []
    audit_hexes: list[str] = []
    for _ in range(40):
        row = shown_row(page, by_hex)
        task = served[row["hex"]]
        meta = task["meta"]
        sources.append(meta["source"])
        if meta["source"] == "audit":
            # The model's prediction is recorded with the task, yet neither shown nor preselected.
            assert task["accept"] == [], task
            assert meta["predicted"] in COLOUR_LABELS, meta
            expect(guess).to_have_text(AUDIT_NOTE)
            expect(guess).not_to_contain_text(meta["predicted"])
            expect(guess).not_to_contain_text("%")
            expect(selected).to_have_count(0)
            audit_hexes.append(row["hex"])
        elif meta["source"] == "initial":
            assert "predicted" not in meta, meta
            expect(guess).to_have_text("no model yet")
            expect(selected).to_have_count(0)
        else:
            predicted = meta["predicted"]
            assert task["accept"] == [predicted], task
            expected = f"model: {predicted}"
            if meta.get("p") is not None:
                expected += f" {js_percent(meta['p'])}%"
            expect(guess).to_have_text(expected)
            expect(selected).to_have_count(1)
            expect(selected).to_have_attribute("data-label", predicted)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])
        if len(audit_hexes) >= 2 and "active" in sources:
            break

    assert sources[0] == "initial", sources
    assert len(audit_hexes) >= 2, f"no random check served in 40 tasks: {sources}"
    assert "active" in sources, sources

    with page.expect_response(is_answers_post) as response:
        page.locator("#save").click()
    assert response.value.ok
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    # The answers went back with the task's meta, so the server can score its audit answers.
    by_posted_hex = {entry["hex"]: entry for entry in posted}
    for hex_value in audit_hexes:
        entry = by_posted_hex[hex_value]
        assert entry["meta"]["source"] == "audit", entry
        assert entry["meta"]["predicted"] == served[hex_value]["meta"]["predicted"], entry
        assert entry["accept"] == [brightest_label(by_hex[hex_value])], entry
    s = wait_for_stats(base, lambda st: st["estimate"]["n_audit"] == len(audit_hexes))
    assert s["estimate"]["n"] == len(audit_hexes), s["estimate"]
    assert page.js_errors == []


def expected_accuracy_text(est: dict) -> str:
    n, n_all = est["n"], est["n_audit"]
    text = (
        f"{js_percent(est['accuracy'])}% ({js_percent(est['confidence'])}% interval "
        f"{js_percent(est['low'])}–{js_percent(est['high'])}%)"
    )
    if n < n_all:
        return text + f" from the latest {n} of {n_all} random checks"
    return text + f" from {n} random check{'' if n == 1 else 's'}"


def test_panel_shows_estimate_stop_and_mistakes(serve, page):
    rows = colour_rows(300, seed=5)
    base = serve(
        rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=10, audit=0.25
    )
    engine = serve.last_engine
    open_page(page, base, "panel-test")

    # Cold start: no estimate, only the reason why; the stop message is the server's, as is.
    s = stats(base)
    assert s["estimate"]["n"] == 0 and s["history"] == [], s
    accuracy = page.locator("#accuracy")
    expect(accuracy).to_have_text(
        "No random checks yet: they start with the first model; then about 1 in 4 tasks is one."
    )
    expect(accuracy.locator(".accuracy-value")).to_have_count(0)
    expect(page.locator("#stop-message")).to_have_text(s["stop"]["message"])
    assert s["stop"]["message"].startswith("Too early to tell"), s["stop"]
    expect(page.locator("#stop")).not_to_have_class(re.compile(r"\bsuggested\b"))
    expect(page.locator("#stop-kappa")).to_be_hidden()
    expect(page.locator("#mistakes")).to_be_hidden()
    expect(page.locator("#curve")).to_contain_text("no model rounds yet")
    # Both curves are named in the legend and explained under the chart.
    legend = page.locator("#curve-legend")
    expect(legend).to_contain_text("accuracy")
    expect(legend).to_contain_text("95% interval")
    expect(legend).to_contain_text("kappa")
    expect(legend).to_contain_text("stop level 0.99")
    caption = page.locator("#curve-caption")
    expect(caption).to_contain_text(
        "Accuracy: share of random checks (random rows still to label) the model got right, "
        "with its 95% interval."
    )
    expect(caption).to_contain_text(
        "Kappa: agreement of each round's predictions with the round before"
    )
    expect(caption).to_contain_text("0.99")

    # Another annotator answers through the API until the stop rule fires (about 120 labels).
    total = 0
    while total < 250:
        added = answer_via_api(base, engine, "bulk", 10)
        assert added, "the pool ran out before the stop rule fired"
        total += added
        if stats(base)["stop"]["suggested"]:
            break
    s = stats(base)
    est, stop, history = s["estimate"], s["stop"], s["history"]
    assert stop["suggested"] is True, stop
    assert (
        est["n"] >= 10
        and est["accuracy"] is not None
        and est["low"] <= est["accuracy"] <= est["high"]
    ), est

    # The panel follows on its next refresh.
    expect(page.locator("#stats-total")).to_have_text(str(s["n_annotations"]))
    expect(accuracy).to_have_text(expected_accuracy_text(est))
    expect(accuracy.locator(".accuracy-value")).to_have_text(f"{js_percent(est['accuracy'])}%")
    expect(page.locator("#stop-message")).to_have_text(stop["message"])
    expect(page.locator("#stop")).to_have_class(re.compile(r"\bsuggested\b"))
    expect(page.locator("#stop-badge")).to_be_visible()
    expect(page.locator("#stop-kappa")).to_have_text(
        f"Last round's predictions agree {stop['kappa']:.3f} with the round before (kappa)."
    )

    # The curve: one accuracy point per round with an estimate, one kappa point per compared round,
    # the interval band, the stop level and where stopping was first suggested.
    with_accuracy = [h for h in history if h["accuracy"] is not None]
    with_kappa = [h for h in history if h["kappa"] is not None]
    assert len(history) <= 40 and with_accuracy and with_kappa, history
    curve = page.locator("#curve")
    expect(curve.locator("circle.acc-dot")).to_have_count(len(with_accuracy))
    expect(curve.locator("circle.kappa-dot")).to_have_count(len(with_kappa))
    expect(curve.locator("polyline.acc")).to_have_count(1 if len(with_accuracy) > 1 else 0)
    expect(curve.locator("polyline.kappa")).to_have_count(1 if len(with_kappa) > 1 else 0)
    expect(curve.locator(".band")).to_have_count(1)
    expect(curve.locator("line.threshold")).to_have_count(1)
    expect(curve.locator("line.stopped")).to_have_count(1)
    expect(page.locator("#legend-stopped")).to_be_visible()
    last_kappa = curve.locator("circle.kappa-dot").last.locator("title")
    expect(last_kappa).to_have_text(re.compile(rf"kappa {with_kappa[-1]['kappa']:.3f} "))

    # Mistakes on random checks: the confusion table and per-label precision and recall.
    matrix = est["confusion"]["matrix"]
    labels = est["confusion"]["labels"]
    assert labels == COLOUR_LABELS
    mistakes = page.locator("#mistakes")
    expect(mistakes).to_be_visible()
    hits = sum(matrix[i][i] for i in range(len(labels)))
    checks = sum(map(sum, matrix))
    expect(page.locator("#mistakes-summary")).to_have_text(
        f"Mistakes on random checks: {checks - hits} of {checks}"
    )
    confusion = page.locator("#confusion")
    expect(confusion).to_be_hidden()  # folded away until asked for
    page.locator("#mistakes-summary").click()
    expect(confusion).to_be_visible()
    expect(confusion.locator("th.corner")).to_have_text("annotator's label ↓")
    expect(confusion.locator("th.cols-name")).to_have_text("model's prediction →")
    shown = [
        i for i, label in enumerate(labels) if sum(matrix[i]) + sum(row[i] for row in matrix) > 0
    ]
    expect(confusion.locator("th.col-label")).to_have_text([labels[j] for j in shown])
    expect(confusion.locator("tbody tr")).to_have_count(len(shown))
    for i in shown:
        cells = confusion.locator(f'tbody tr[data-label="{labels[i]}"] td')
        expect(cells).to_have_count(len(shown))
        assert [int(c) for c in cells.evaluate_all("tds => tds.map(td => td.dataset.count)")] == [
            matrix[i][j] for j in shown
        ]
    quality = page.locator("#quality")
    expect(quality).to_be_visible()
    for i in shown:
        q = est["per_label"][labels[i]]
        expected = [
            str(q["support"]),
            "–" if q["precision"] is None else f"{js_percent(q['precision'])}%",
            "–" if q["recall"] is None else f"{js_percent(q['recall'])}%",
        ]
        expect(quality.locator(f'tbody tr[data-label="{labels[i]}"] td')).to_have_text(expected)
    assert page.js_errors == []


def test_no_random_checks_means_no_accuracy(serve, page):
    rows = colour_rows(80, seed=6)
    base = serve(
        rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=10, audit=0.0
    )
    for _ in range(3):
        assert answer_via_api(base, serve.last_engine, "bulk", 10) == 10
    s = stats(base)
    assert s["audit"] == 0 and s["model_round"] >= 1 and s["estimate"]["n"] == 0, s
    open_page(page, base, "no-audit")
    expect(page.locator("#stats-total")).to_have_text("30")
    expect(page.locator("#accuracy")).to_have_text(
        "Random checks are off (audit share 0), so there is no honest accuracy estimate."
    )
    expect(page.locator("#accuracy .accuracy-value")).to_have_count(0)
    expect(page.locator("#mistakes")).to_be_hidden()
    expect(page.locator("#stop-message")).to_have_text(s["stop"]["message"])
    # The model's guess is still offered on the tasks it picked.
    expect(page.locator("#guess")).to_have_text(re.compile(r"^model: (red|green|blue)( \d+%)?$"))
    expect(page.locator("#curve circle.acc-dot")).to_have_count(0)
    expect(page.locator("#curve circle.kappa-dot")).to_have_count(
        len([h for h in s["history"] if h["kappa"] is not None])
    )
    assert page.js_errors == []


# ---------------------------------------------------------------- other origins


def test_cross_origin_page_can_neither_lease_rows_nor_post_answers(serve, page, tmp_path):
    """A page on another origin (another port of 127.0.0.1) tries what a hostile site would:
    a no-cors fetch with a text/plain body (sent without a preflight), a JSON fetch (needs a
    preflight the server does not grant), a text/plain form posting a JSON answer batch into a
    hidden iframe, and a GET of /api/questions. Each attempt reaches the server (its access log
    says so; of the JSON fetch, only the preflight) and is refused; nothing is leased or stored.
    The same JSON requests made from the server's own origin do lease and store, so the refusals
    are down to the origin."""
    rows = colour_rows(40, seed=7)
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    engine = serve.last_engine
    # A valid answer to a real pool row, without leasing it: what the form would store if let in.
    answer = dict(
        rows[0],
        _input_hash=int(engine.pool.input_hashes[0]),
        _task_hash=engine.task_hash(0),
        answer="accept",
        accept=[brightest_label(rows[0])],
    )
    lease_body = json.dumps({"session": "evil", "n": 5})
    answer_body = json.dumps({"session": "evil", "answers": [answer], "pad": "="})
    # text/plain forms send "name=value": split the JSON at its last "=" so that is the body.
    field_name, field_value = answer_body.rsplit("=", 1)
    evil_page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>working</title></head><body>
<iframe name="sink" id="sink" style="display:none"></iframe>
<form id="form" method="POST" action="{html.escape(base)}/api/answers" target="sink"
      enctype="text/plain">
  <input type="hidden" name="{html.escape(field_name)}" value="{html.escape(field_value)}">
</form>
<script>
const target = {json.dumps(base)};
const outcome = p => p.then(r => `response ${{r.type}} ${{r.status}}`, e => `error ${{e.name}}`);
const formPosted = new Promise(resolve => {{
  const sink = document.getElementById("sink");
  sink.addEventListener("load", () => resolve("loaded"), {{once: true}});
  setTimeout(() => resolve("timeout"), 5000);
  document.getElementById("form").submit();
}});
const attempts = {{
  no_cors_text: outcome(fetch(target + "/api/questions", {{
    method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
    body: {json.dumps(lease_body)},
  }})),
  cors_json: outcome(fetch(target + "/api/questions", {{
    method: "POST", headers: {{"Content-Type": "application/json"}},
    body: {json.dumps(lease_body)},
  }})),
  form: formPosted,
  get_questions: outcome(fetch(target + "/api/questions?session=x")),
}};
Promise.all(Object.entries(attempts).map(([k, p]) => p.then(v => [k, v]))).then(done => {{
  document.body.dataset.results = JSON.stringify(Object.fromEntries(done));
  document.title = "done";
}});
</script></body></html>"""
    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_text(evil_page, encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site))
    )
    evil_url = f"http://127.0.0.1:{evil.server_address[1]}"
    assert evil_url != base
    threading.Thread(target=evil.serve_forever, daemon=True).start()

    # The retrain-loop server's access log, read on its side: (method, path, status).
    seen: list[tuple[str, str, int]] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            _, method, path, _, status = record.args
            seen.append((method, path, int(status)))

    access = logging.getLogger("uvicorn.access")
    recorder, level = Recorder(), access.level
    access.addHandler(recorder)
    access.setLevel(logging.INFO)
    try:
        page.goto(f"{evil_url}/index.html")
        expect(page).to_have_title("done")
        results = json.loads(page.locator("body").get_attribute("data-results"))
        # The page learns nothing: an opaque response, or a network error.
        assert results["no_cors_text"] == "response opaque 0", results
        assert results["cors_json"] == "error TypeError", results
        assert results["get_questions"] == "error TypeError", results
        assert results["form"] in ("loaded", "timeout"), results
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while ("POST", "/api/answers", 415) not in seen and time.monotonic() < deadline:
            time.sleep(0.05)

        # Every attempt reached the server, and was refused there.
        assert ("POST", "/api/questions", 415) in seen, seen  # not JSON
        assert ("OPTIONS", "/api/questions", 405) in seen, seen  # the preflight, not granted
        assert ("POST", "/api/answers", 415) in seen, seen  # the form: text/plain
        assert ("GET", "/api/questions?session=x", 405) in seen, seen  # leasing is a POST
        assert all(status >= 400 for _, _, status in seen), seen
        # The JSON POST itself never left the browser.
        assert sum(m == "POST" and p == "/api/questions" for m, p, _ in seen) == 1, seen
        assert engine.stats()["n_out"] == 0
        assert engine.store.count("test") == 0

        # The same requests from the server's own origin (a page on it; /healthz, so that the
        # annotation page does not lease rows itself) do work.
        page.goto(f"{base}/healthz")
        own = page.evaluate(
            """async ([leaseBody, answerBody]) => {
                const post = (path, body) => fetch(path, {
                    method: "POST", headers: {"Content-Type": "application/json"}, body,
                }).then(async r => ({status: r.status, body: await r.json()}));
                return [await post("/api/questions", leaseBody),
                        await post("/api/answers", answerBody)];
            }""",
            [lease_body, answer_body],
        )
    finally:
        access.removeHandler(recorder)
        access.setLevel(level)
        evil.shutdown()
        evil.server_close()
    leased, stored = own
    assert leased["status"] == 200 and len(leased["body"]["tasks"]) == 5, leased
    assert stored == {"status": 200, "body": {"stored": 1}}, stored
    # The answer took its row out of the lease, if the five leased rows held it.
    held = 5 - any(t["_input_hash"] == answer["_input_hash"] for t in leased["body"]["tasks"])
    assert engine.stats()["n_out"] == held
    assert engine.store.count("test") == 1
    assert page.js_errors == []


def test_a_focused_control_keeps_enter_and_space(serve, page):
    rows = colour_rows(60, seed=3)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "focus")
    first = shown_row(page, by_hex)
    label_with_keys(page, first)
    page.keyboard.press("Enter")  # nothing focused: Enter accepts
    wait_for_next(page, first["hex"])
    expect(page.locator("#unsaved")).to_have_text("1 unsaved")
    second = shown_row(page, by_hex)
    label_with_keys(page, second)
    page.focus("#undo")
    page.keyboard.press("Enter")  # on Undo, Enter undoes: it does not accept the second row
    expect(page.locator("#swatch-hex")).to_have_text(first["hex"])
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    page.focus("#skip")
    page.keyboard.press(" ")  # on Skip, Space skips once
    wait_for_next(page, first["hex"])
    expect(page.locator("#unsaved")).to_have_text("1 unsaved")
    # A clicked label keeps Enter for accepting.
    third = shown_row(page, by_hex)
    label = brightest_label(third)
    page.click(f'#labels button.label[data-label="{label}"]')
    page.keyboard.press("Enter")
    wait_for_next(page, third["hex"])
    expect(page.locator("#unsaved")).to_have_text("2 unsaved")


# ---------------------------------------------------------------- keys, binary mode, clear states

TWELVE = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "grey",
          "black", "white"]


def posted_answers(page) -> list[dict]:
    """Every answer the page posts, in order, read from its requests."""
    posted: list[dict] = []
    page.on(
        "request",
        lambda request: (
            posted.extend(request.post_data_json["answers"])
            if request.url.endswith("/api/answers") and request.method == "POST"
            else None
        ),
    )
    return posted


@pytest.mark.parametrize(
    "keys, twelfth",
    [(None, "w"), ("asdfghjkl;zq", "q")],
    ids=["default-keys", "keys-option"],
)
def test_every_label_has_a_key_and_the_twelfth_picks_the_twelfth(serve, page, keys, twelfth):
    rows = colour_rows(40, seed=8)
    by_hex = {row["hex"]: row for row in rows}
    app_options = {} if keys is None else {"keys": keys}
    base = serve(rows, TWELVE, view="colour", features=["r", "g", "b"], batch_size=5,
                 app_options=app_options)
    project = httpx.get(base + "/api/project", timeout=5.0).json()
    open_page(page, base, "twelve")
    buttons = page.locator("#labels button.label")
    expect(buttons).to_have_count(12)
    expect(buttons.locator("kbd.key")).to_have_text(project["keys"])
    last = buttons.nth(11)
    expect(last).to_have_attribute("data-label", "white")
    expect(last.locator("kbd.key")).to_have_text(twelfth)
    shown = last.locator("kbd.key").inner_text()

    row = shown_row(page, by_hex)
    page.keyboard.press(shown)
    expect(page.locator("#labels button.label.selected")).to_have_attribute("data-label", "white")
    page.keyboard.press(shown.upper() if shown.isalpha() else shown)  # either case of a letter
    expect(page.locator("#labels button.label.selected")).to_have_count(1)
    page.keyboard.press(project["keys"][9])  # the tenth key: "0" by default
    expect(page.locator("#labels button.label.selected")).to_have_attribute("data-label", "grey")
    if keys is None:
        expect(page.locator("#keys-help")).to_have_text(
            "Keys: 1–9, 0, q, w pick a label · Enter accept · Space skip · Backspace undo"
        )
    else:
        expect(page.locator("#keys-help")).to_have_text(
            "Keys: a, s, d, f, g, h, j, k, l, ;, z, q pick a label · Enter accept · Space skip · "
            "Backspace undo"
        )
    page.keyboard.press("Enter")
    wait_for_next(page, row["hex"])
    expect(page.locator("#unsaved")).to_have_text("1 unsaved")
    assert page.js_errors == []


def test_an_older_server_without_keys_gives_the_first_nine_labels_digits(serve, page):
    rows = colour_rows(20, seed=9)
    base = serve(rows, TWELVE, view="colour", features=["r", "g", "b"], batch_size=5)

    def without_keys(route):
        body = route.fetch().json()
        body.pop("keys", None)
        body.pop("mode", None)
        route.fulfill(json=body)

    page.route("**/api/project", without_keys)
    open_page(page, base, "old-server")
    keys = page.locator("#labels button.label kbd.key")
    expect(keys).to_have_text([str(i) for i in range(1, 10)])
    page.keyboard.press("9")
    expect(page.locator("#labels button.label.selected")).to_have_attribute("data-label", "brown")
    expect(page.locator("#keys-help")).to_have_text(
        "Keys: 1–9 pick a label · Enter accept · Space skip · Backspace undo"
    )
    assert page.js_errors == []


def test_binary_mode_asks_yes_or_no_about_the_models_guess(serve, page):
    rows = colour_rows(200, seed=10)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5,
                 mode="binary", audit=0.0)
    engine = serve.last_engine
    posted = posted_answers(page)
    open_page(page, base, "yes-no")
    question = page.locator("#question")

    # No model yet: multiple choice, as in choice mode.
    expect(question).to_be_hidden()
    expect(page.locator("#reject")).to_be_hidden()
    expect(page.locator("#keys-help")).to_have_text(
        "Keys: 1–3 pick a label · Enter accept · Space skip · Backspace undo"
    )
    verdicts: dict[str, str] = {}
    for _ in range(40):
        row = shown_row(page, by_hex)
        if question.is_visible():
            label = page.locator("#question-label").inner_text()
            assert label in COLOUR_LABELS
            expect(page.locator("#labels")).to_be_hidden()
            expect(page.locator("#reject")).to_be_visible()
            expect(page.locator("#skip")).to_contain_text("Ignore")
            expect(page.locator("#accept")).to_contain_text("a")
            expect(page.locator("#keys-help")).to_have_text(
                "Keys: a or Enter accept · x reject · Space ignore · Backspace undo"
            )
            expect(page.locator("#announce")).to_have_text(re.compile(rf"Is it {label}\?$"))
            # The first question is rejected and the second accepted, whatever the model said.
            key = "x" if not verdicts else "a"
            verdicts[row["hex"]] = ("reject" if key == "x" else "accept", label)
            page.keyboard.press(key)
        else:
            expect(page.locator("#labels button.label")).to_have_count(3)
            label_with_keys(page, row)
            page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])
        if len(verdicts) == 2:
            break
        if page.locator("#unsaved").inner_text() != "0 unsaved" and len(posted) % 5 == 0:
            engine.wait_idle(30)
    assert len(verdicts) == 2, "no yes/no question in 40 tasks"

    with page.expect_response(is_answers_post) as response:
        page.locator("#save").click()
    assert response.value.ok
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    by_hex_posted = {entry["hex"]: entry for entry in posted}
    for hex_value, (verdict, label) in verdicts.items():
        entry = by_hex_posted[hex_value]
        assert entry["answer"] == verdict and entry["accept"] == [] and entry["label"] == label
    stored = {r["hex"]: r for r in engine.store.get("test")}
    for hex_value, (verdict, label) in verdicts.items():
        assert stored[hex_value]["answer"] == verdict, stored[hex_value]
        assert stored[hex_value]["accept"] == ([label] if verdict == "accept" else [])
    assert page.js_errors == []


def test_server_away_banner_clears_itself_and_the_answers_go_out(serve, page):
    rows = colour_rows(60, seed=11)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=10)
    open_page(page, base, "away")
    accept_shown(page, by_hex, 2)

    # The server stops answering: every request fails as a refused connection does.
    page.route("**/api/**", lambda route: route.abort("connectionrefused"))
    page.locator("#save").click()
    banner = page.locator("#error-text")
    expect(banner).to_have_text(
        "The server is not answering; your 2 answers are kept in this browser and will be sent "
        "when it is back. Trying again every few seconds."
    )
    row = shown_row(page, by_hex)
    label_with_keys(page, row)
    page.keyboard.press("Enter")  # answering goes on from the tasks the page holds
    expect(banner).to_contain_text("your 3 answers are kept")
    expect(page.locator("#unsaved")).to_have_text("3 unsaved")
    page.wait_for_timeout(3500)  # a tick's retry fails quietly
    expect(banner).to_contain_text("your 3 answers are kept")
    assert "fetch" not in banner.inner_text().lower()
    assert stats(base)["n_annotations"] == 0

    # Back: the next tick finds it, the banner goes and the answers are sent without a Save.
    page.unroute("**/api/**")
    expect(page.locator("#error-banner")).to_be_hidden()
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")
    assert wait_for_stats(base, lambda st: st["n_annotations"] == 3)["n_annotations"] == 3
    expect(page.locator("#stats-total")).to_have_text("3")
    assert page.js_errors == []


def test_leaving_the_page_hands_its_rows_back(serve, page):
    rows = colour_rows(40, seed=12)
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "leaver")
    held = wait_for_stats(base, lambda st: st["n_out"] >= 5)["n_out"]
    # Without fetch, so only the beacon can do it: it must carry the JSON type the server asks for.
    page.evaluate(
        """() => {
            const real = window.fetch;
            window.fetch = (url, init) => String(url).includes("/api/release")
                ? Promise.reject(new TypeError("no fetch in this test")) : real(url, init);
        }"""
    )
    page.close()
    s = wait_for_stats(base, lambda st: st["n_out"] == 0)
    assert s["n_remaining"] == len(rows) and held >= 5, s


def test_navigating_away_hands_rows_back_and_saves_the_answers(serve, page):
    rows = colour_rows(40, seed=13)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "navigator")
    row = shown_row(page, by_hex)
    label_with_keys(page, row)
    page.keyboard.press("Enter")
    wait_for_next(page, row["hex"])
    assert wait_for_stats(base, lambda st: st["n_out"] >= 4)["n_annotations"] == 0
    page.goto(base + "/healthz")
    s = wait_for_stats(base, lambda st: st["n_annotations"] == 1 and st["n_out"] == 0)
    assert s["n_remaining"] == len(rows) - 1, s


def test_no_more_tasks_says_how_many_rows_are_out_and_when_they_free_up(serve, page):
    rows = colour_rows(8, seed=14)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    other = httpx.post(base + "/api/questions", json={"session": "other", "n": 3}, timeout=5.0)
    assert len(other.json()["tasks"]) == 3
    open_page(page, base, "last-one")
    for i in range(5):
        row = shown_row(page, by_hex)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        if i < 4:
            wait_for_next(page, row["hex"])
    done = page.locator("#done")
    expect(done).to_be_visible()
    expect(page.locator("#done-title")).to_have_text(
        "No more tasks for now: 3 rows are out with other annotators or closed pages; "
        "the first frees up in 10 min."
    )
    # Announced once, when it comes on screen (not at every tick's new minute).
    expect(page.locator("#announce")).to_have_text(
        re.compile(r"^No more tasks for now: 3 rows are out with other annotators")
    )
    assert page.js_errors == []


def test_undo_of_a_saved_answer_takes_it_back_on_the_server(serve, page):
    rows = colour_rows(60, seed=15)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "undoer")
    answered = []
    for _ in range(5):  # the fifth fills the batch, which is posted
        row = shown_row(page, by_hex)
        answered.append(row)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])
    wait_for_stats(base, lambda st: st["n_annotations"] == 5)
    expect(page.locator("#stats-total")).to_have_text("5")
    expect(page.locator("#unsaved")).to_have_text("0 unsaved")

    with page.expect_response(lambda r: r.url.endswith("/api/retract")) as retracted:
        page.keyboard.press("Backspace")
    assert retracted.value.json() == {"retracted": 1}
    expect(page.locator("#swatch-hex")).to_have_text(answered[-1]["hex"])
    expect(page.locator("#stats-total")).to_have_text("4")
    s = stats(base)
    assert s["n_annotations"] == 4 and sum(s["per_label"].values()) == 4, s
    # Answered again, it is stored again.
    label_with_keys(page, answered[-1])
    page.keyboard.press("Enter")
    page.locator("#save").click()
    expect(page.locator("#stats-total")).to_have_text("5")
    assert page.js_errors == []


def test_a_wide_record_keeps_the_labels_and_accept_in_view(serve, browser):
    rows = [
        {"id": f"r{i}", **{f"feature_{j:02d}": round(i * 0.37 + j, 2) for j in range(29)}}
        for i in range(20)
    ]
    assert len(rows[0]) == 30
    base = serve(rows, TWELVE, view="record", features=[f"feature_{j:02d}" for j in range(29)],
                 batch_size=5)
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    try:
        open_page(page, base, "wide")
        expect(page.locator("#record-body tr")).to_have_count(30)
        assert page.evaluate("document.documentElement.scrollHeight") > 768, "the record fits anyway"
        assert page.evaluate("window.scrollY") == 0
        for selector in ("#accept", "#labels button.label >> nth=11", "#skip", "#undo"):
            box = page.locator(selector).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= 768, (selector, box)
        expect(page.locator("#action-bar")).to_have_class(re.compile(r"\bstuck\b"))
        expect(page.locator("#announce")).to_have_text("Task 1: record with 30 fields.")
        page.keyboard.press("w")
        page.locator("#accept").click()  # clickable where it is: nothing covers it
        expect(page.locator("#unsaved")).to_have_text("1 unsaved")
        expect(page.locator("#announce")).to_have_text("Task 2: record with 30 fields.")
    finally:
        context.close()


def test_each_new_task_is_announced(serve, page):
    rows = colour_rows(30, seed=16)
    by_hex = {row["hex"]: row for row in rows}
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "listener")
    announce = page.locator("#announce")
    expect(announce).to_have_attribute("aria-live", "polite")
    first = shown_row(page, by_hex)
    expect(announce).to_have_text(f"Task 1: colour {first['hex']}.")
    label_with_keys(page, first)
    page.keyboard.press("Enter")
    wait_for_next(page, first["hex"])
    second = shown_row(page, by_hex)
    expect(announce).to_have_text(f"Task 2: colour {second['hex']}.")
    page.keyboard.press("Backspace")
    expect(announce).to_have_text(f"Task 1: colour {first['hex']}.")


def test_coming_back_to_the_page_leases_rows_again(serve, page):
    rows = colour_rows(40, seed=17)
    base = serve(rows, COLOUR_LABELS, view="colour", features=["r", "g", "b"], batch_size=5)
    open_page(page, base, "returner")
    wait_for_stats(base, lambda st: st["n_out"] >= 5)
    page.goto(base + "/healthz")
    wait_for_stats(base, lambda st: st["n_out"] == 0)
    # Back (from the back-forward cache, or loaded again): the rows it shows are its own again.
    page.go_back()
    expect(page.locator("#task")).to_be_visible()
    wait_for_stats(base, lambda st: st["n_out"] >= 5)
    assert page.js_errors == []
