"""Slider moved in a real browser -> updated prediction bars in the page (target: median <= 300 ms).

Renders examples/02_ablate_units.ipynb in Voila (127.0.0.1, a free port) and drives Debian's Chromium with
Playwright.  Each move puts the AblationPanel's first unit slider at the other end (keyboard Home / End, which the
slider handles like a drag to the end: one value message).  The clock is the page's own ``performance.now()``:
from the keydown to the mutation of the bars' HTML, so it covers front end -> websocket -> kernel (model run)
-> websocket -> DOM, and not Playwright's overhead.

    OMP_NUM_THREADS=1 python benchmarks/browser_roundtrip.py --moves 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from voila_harness import EXAMPLES, VoilaServer, launch, open_notebook  # noqa: E402

INSTALL = """bars => {
    window.__rt = {t0: null, lat: []};
    document.addEventListener('keydown', () => { window.__rt.t0 = performance.now(); }, true);
    new MutationObserver(() => {
        const rt = window.__rt;
        if (rt.t0 !== null) { rt.lat.push(performance.now() - rt.t0); rt.t0 = null; }
    }).observe(bars, {childList: true, subtree: true, characterData: true});
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--notebook", default="02_ablate_units.ipynb")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    t = time.perf_counter()
    with VoilaServer(EXAMPLES) as voila, sync_playwright() as p:
        context = launch(p, tempfile.mkdtemp(prefix="ganviz-chromium-"))
        try:
            page = open_notebook(context, voila.url(args.notebook),
                                 [".ganviz-ablation .ganviz-unit-slider .noUi-handle", ".ganviz-ablation .ganviz-bars"])
            panel = page.locator(".ganviz-ablation").first
            page.wait_for_function("el => el.innerText.includes('predicted')",
                                   arg=panel.locator(".ganviz-status").element_handle())
            print(f"Voila rendered {args.notebook} in {time.perf_counter() - t:.1f} s (not timed below)")
            bars = panel.locator(".ganviz-bars .widget-html-content").element_handle()
            page.evaluate(INSTALL, bars)
            slider = panel.locator(".ganviz-unit-slider").first
            handle = slider.locator(".noUi-handle")
            handle.focus()
            wall = []
            for i in range(args.moves + 2):            # the first two are warm-up
                key = "Home" if i % 2 == 0 else "End"
                want = "0.00" if key == "Home" else "3.00"
                t = time.perf_counter()
                handle.press(key)
                page.wait_for_function("n => window.__rt.lat.length >= n", arg=i + 1, polling=5, timeout=30_000)
                wall.append(time.perf_counter() - t)
                assert slider.locator(".widget-readout").inner_text().strip() == want
            lat = page.evaluate("window.__rt.lat")[2:]
            wall = wall[2:]
        finally:
            context.close()
    med = statistics.median(lat)
    print(f"slider moved -> bars updated in the page: median {med:.0f} ms, min {min(lat):.0f}, max {max(lat):.0f} "
          f"over {len(lat)} moves (page clock); as seen from Playwright: median "
          f"{statistics.median(wall) * 1e3:.0f} ms")
    print(f"target <= 300 ms: {'OK' if med <= 300 else 'ABOVE'}")


if __name__ == "__main__":
    main()
