"""Voila + Playwright (Debian's Chromium) plumbing shared by the browser tests and benchmarks/browser_roundtrip.py.

Nothing here is pytest-specific: :class:`VoilaServer` runs Voila on 127.0.0.1 as a subprocess, :func:`launch` opens
Chromium with a fresh profile, :func:`open_notebook` renders a notebook and waits for its widgets, and the small
``image_*`` / ``wait_*`` helpers read what the page shows.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHROMIUM = os.environ.get("GANVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
# first run of a notebook dissects 2000 images (cached under examples/.ganviz-cache afterwards)
RENDER_TIMEOUT_S = float(os.environ.get("GANVIZ_VOILA_TIMEOUT", 420))


def screenshot_dir() -> Path:
    d = Path(os.environ.get("GANVIZ_SCREENSHOTS", REPO / "build" / "screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the Voila kernels), read from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


class VoilaServer:
    """``voila --no-browser`` on 127.0.0.1 and a free port, serving ``root`` (a directory of notebooks)."""

    def __init__(self, root: Path = EXAMPLES, port: int | None = None, threads: int = 1,
                 command: list[str] | None = None):
        self.root, self.port = Path(root), port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="ganviz-voila-", suffix=".log")[1])
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
        if command is None:
            voila = Path(sys.executable).with_name("voila")
            command = [str(voila) if voila.exists() else "voila", "--no-browser", f"--port={self.port}",
                       "--Voila.ip=127.0.0.1", "--show_tracebacks=True",
                       # a kernel may sit idle while the tests look at another notebook
                       "--MappingKernelManager.cull_idle_timeout=0", str(self.root)]
        else:  # a command that serves one app (e.g. the README's ``ganviz app``), told which port to use
            command = [*command, f"--port={self.port}", "--no-browser"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def url(self, notebook: str) -> str:
        return f"{self.base}/voila/render/{notebook}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voila exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"voila not answering on {self.base} after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            kernels = _children(self.proc.pid)
            os.killpg(self.proc.pid, signal.SIGTERM)   # voila shuts its kernels down on SIGTERM
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            for pid in kernels:                        # kernels live in their own sessions
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()

    def __enter__(self) -> "VoilaServer":
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is None:                             # a log is kept only when the block failed
            self.log_path.unlink(missing_ok=True)


def launch(playwright, user_data_dir: str | Path):
    """Debian's Chromium, headless, with a fresh profile (Playwright's own browser download is not used)."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir=str(user_data_dir), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport=VIEWPORT)


def open_notebook(context, url: str, ready: list[str], timeout_s: float = RENDER_TIMEOUT_S):
    """Open ``url`` (a Voila render URL) and wait until every selector in ``ready`` is visible.

    Raises with the notebook's error output if a cell failed.  The page records console errors in
    ``page.console_errors``.
    """
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.set_default_timeout(30_000)
    page.goto(url, timeout=timeout_s * 1000, wait_until="load")   # Voila streams cells, 'load' = all ran
    check_no_cell_errors(page)
    for sel in ready:
        page.locator(sel).first.wait_for(state="visible", timeout=60_000)
    return page


def check_no_cell_errors(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                          ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    texts = [t for t in errors.all_inner_texts() if "Error" in t or "Traceback" in t]
    assert not texts, "a notebook cell failed in Voila:\n" + "\n".join(t[-2000:] for t in texts)


# -- reading what the page shows -------------------------------------------------------------------------------
_DIGEST_JS = """async (img) => {
    if (!img.src) return null;
    const buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let h = 0x811c9dc5;                                  // FNV-1a over the image bytes
    for (let i = 0; i < buf.length; i++) { h ^= buf[i]; h = Math.imul(h, 16777619) >>> 0; }
    return buf.length + ':' + h.toString(16);
}"""


def wait_image_loaded(img, timeout_s: float = 30) -> None:
    """Wait until the <img> has a decoded picture (``complete`` and a natural width)."""
    img.wait_for(state="attached", timeout=timeout_s * 1000)
    img.page.wait_for_function("img => img.src && img.complete && img.naturalWidth > 0", arg=img.element_handle(),
                               timeout=timeout_s * 1000)


def image_digest(img, timeout_s: float = 30) -> str | None:
    """A hash of the bytes the <img> shows (its blob URL changes whenever the widget's value is set).

    Waits until the browser has finished with the current ``src``; None if it shows no picture (empty value).
    """
    img.page.wait_for_function("img => img.complete", arg=img.element_handle(), timeout=timeout_s * 1000)
    if not img.evaluate("img => img.naturalWidth > 0"):
        return None
    return img.evaluate(_DIGEST_JS)


def image_size(img) -> dict:
    """Natural (sent) and rendered size of an <img>."""
    return img.evaluate("img => ({natural: [img.naturalWidth, img.naturalHeight],"
                        " shown: [img.clientWidth, img.clientHeight]})")


def _wait(locator, js: str, args: list, timeout_s: float, what: str) -> None:
    """``wait_for_function`` on ``js([el, *args])``; on timeout an AssertionError that shows the element's text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        locator.page.wait_for_function(js, arg=[locator.element_handle(), *args], timeout=timeout_s * 1000,
                                       polling="raf")
    except PlaywrightTimeout:
        raise AssertionError(f"after {timeout_s:.0f} s still no {what}; the element shows "
                             f"{locator.inner_text()[:500]!r}") from None


def wait_text_change(locator, old: str, timeout_s: float = 30) -> str:
    """Wait until the element's innerText differs from ``old``; return it."""
    _wait(locator, "([el, old]) => el.innerText !== old", [old], timeout_s, "change of the text")
    return locator.inner_text()


def wait_html_change(locator, old: str, timeout_s: float = 30) -> str:
    _wait(locator, "([el, old]) => el.innerHTML !== old", [old], timeout_s, "change of the HTML")
    return locator.inner_html()


def wait_html_equal(locator, html: str, timeout_s: float = 30) -> None:
    _wait(locator, "([el, html]) => el.innerHTML === html", [html], timeout_s, "return to the earlier HTML")


def wait_text_contains(locator, text: str, timeout_s: float = 30) -> str:
    _wait(locator, "([el, t]) => el.innerText.includes(t)", [text], timeout_s, f"{text!r}")
    return locator.inner_text()


def wait_src_change(img, old_src: str | None, timeout_s: float = 30) -> None:
    _wait(img, "([img, old]) => img.src !== old", [old_src], timeout_s, "new image")


_CONTENT_BOX_JS = """el => {
    // union of what is drawn inside el: text, images, form controls, sliders (boxes stretch to the page width)
    const r0 = el.getBoundingClientRect();
    let l = Infinity, t = Infinity, r = -Infinity, b = -Infinity;
    const add = (q) => { if (q.width > 0 && q.height > 0) {
        l = Math.min(l, q.left); t = Math.min(t, q.top); r = Math.max(r, q.right); b = Math.max(b, q.bottom); } };
    el.querySelectorAll('img, button, select, input, canvas, svg, .noUi-target, table').forEach(e => {
        if (e.offsetParent !== null) add(e.getBoundingClientRect()); });
    const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        if (!n.textContent.trim()) continue;
        const range = document.createRange(); range.selectNodeContents(n);
        for (const q of range.getClientRects()) add(q);
    }
    if (l === Infinity) return {x: r0.left, y: r0.top, width: r0.width, height: r0.height};
    l = Math.max(l - 8, r0.left); t = Math.max(t - 8, r0.top);
    return {x: l, y: t, width: Math.min(r + 8, r0.right) - l, height: Math.min(b + 8, r0.bottom) - t};
}"""


def screenshot_content(el, path) -> None:
    """Screenshot of what ``el`` draws, cropped to its content (for slides).

    Voila scrolls an inner panel, so Chromium cannot capture beyond the viewport: the viewport grows to fit.
    """
    page, size = el.page, el.page.viewport_size
    height = el.evaluate("el => el.getBoundingClientRect().height")
    if height + 40 > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": int(height) + 40})
    try:
        el.scroll_into_view_if_needed()
        page.wait_for_timeout(50)      # let a resize relayout settle
        page.screenshot(path=str(path), clip=el.evaluate(_CONTENT_BOX_JS), animations="disabled")
    finally:
        page.set_viewport_size(size)


def broken_images(el) -> list[str]:
    """Visible <img> elements inside ``el`` that show no picture (the browser's broken-image icon)."""
    return el.evaluate("""el => [...el.querySelectorAll('img')]
        .filter(i => i.offsetParent !== null && i.complete && i.naturalWidth === 0)
        .map(i => i.className)""")


def drag_slider_to(slider, fraction: float, expect: str | None = None, steps: int = 8, tries: int = 3) -> None:
    """Drag an ipywidgets slider's handle with the mouse to ``fraction`` (0..1) of its track.

    With ``expect``, wait for the read-out to show it and drag again (up to ``tries`` times) when it does not: on a
    loaded machine the page can still be laying out (images arriving above the slider) while the boxes are measured,
    and a drag aimed from stale boxes lands short (CI once read 0.10 for a drag to 1.00).
    """
    for attempt in range(tries):
        _drag_once(slider, fraction, steps)
        if expect is None:
            return
        try:
            wait_text_contains(slider.locator(".widget-readout"), expect, timeout_s=10)
            return
        except AssertionError:
            if attempt == tries - 1:
                raise


def _stable_box(locator, quiet_s: float = 0.15, timeout_s: float = 10) -> dict:
    """The element's bounding box once two readings ``quiet_s`` apart agree (layout has settled)."""
    deadline = time.monotonic() + timeout_s
    box = locator.bounding_box()
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = locator.bounding_box()
        if again == box:
            break
        box = again
    return box


def _drag_once(slider, fraction: float, steps: int) -> None:
    page = slider.page
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first
    track = _stable_box(slider.locator(".noUi-base, .noUi-target").first)
    box = _stable_box(handle)
    x0, y0 = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    x1 = track["x"] + fraction * track["width"]
    if fraction <= 0:
        x1 -= 20      # overshoot: the handle stops at the end
    elif fraction >= 1:
        x1 += 20
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y0, steps=steps)
    page.mouse.up()


# -- canvases --------------------------------------------------------------------------------------------------
def canvas_pixels(canvas):
    """The RGB pixels an ipycanvas <canvas> shows, as an (H, W, 3) uint8 array (read back as PNG)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    url = canvas.evaluate("c => c.toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_canvas_settled(canvas, before, timeout_s: float = 30, quiet_s: float = 0.6):
    """Wait until the canvas differs from ``before`` (None: skip) and then stays unchanged for ``quiet_s``."""
    import numpy as np

    deadline = time.monotonic() + timeout_s
    last = canvas_pixels(canvas)
    while before is not None and np.array_equal(last, before):
        if time.monotonic() > deadline:
            raise AssertionError(f"the canvas did not change within {timeout_s:.0f} s")
        time.sleep(0.1)
        last = canvas_pixels(canvas)
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < quiet_s:
        if time.monotonic() > deadline:
            raise AssertionError(f"the canvas kept changing for {timeout_s:.0f} s")
        time.sleep(0.1)
        now = canvas_pixels(canvas)
        if not np.array_equal(now, last):
            last, stable_since = now, time.monotonic()
    return last


def drag_on(canvas, points, steps: int = 4) -> None:
    """Press the mouse at ``points[0]`` (pixels of the canvas element), move through the others, release."""
    page = canvas.page
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    xy = [(box["x"] + x, box["y"] + y) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()
