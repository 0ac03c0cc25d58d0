"""End-to-end checks of the annotation page in a real headless Chromium.

The `serve` fixture (tests/conftest.py) runs the real engine and FastAPI app on a free port.
Skipped, with the reason, when Playwright or a Chromium executable is missing.
"""

from __future__ import annotations

import os
import re
import shutil
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

    for i in range(5):
        row = shown_row(page, by_hex)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])

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
    for _ in range(2):
        row = shown_row(page, by_hex)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])
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
    for _ in range(3):
        row = shown_row(page, by_hex)
        label_with_keys(page, row)
        page.keyboard.press("Enter")
        wait_for_next(page, row["hex"])
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
