"""Keep saved widget state out of notebooks, and the outputs small, without losing the outputs the tests compare.

    python tools/strip_notebooks.py examples/*.ipynb          # rewrite in place
    python tools/strip_notebooks.py --check examples/*.ipynb  # exit 1 naming the notebooks that carry widget state
    python tools/strip_notebooks.py --filter < nb.ipynb       # stdin -> stdout, for a git clean filter

As a git clean filter (``.gitattributes`` names it for ``examples/*.ipynb``; enable it once per clone)::

    git config filter.strip-notebooks.clean "python tools/strip_notebooks.py --filter"

What goes: the notebook's ``metadata.widgets`` (the saved state of every widget model) and the
``application/vnd.jupyter.widget-view+json`` part of each output (a reference to that state; the output's
``text/plain`` stays); and of an image shown both as PNG and as JPEG (PIL images are), the larger of the two
(PNGs re-encoded with zlib's best compression and a palette of at most 256 colours first).  What stays: every
text output and one picture per image output, so the front-end tests (which compare the text outputs of the
cells marked ``# NBVAL_CHECK_OUTPUT``, as ``pytest --nbval-lax`` does, and never images) see the same outputs.
The result is written as Jupyter writes notebooks (one-space indent, sorted keys), so a stripped notebook is
stripped again to the same bytes.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["strip", "widget_state", "dumps", "main"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def widget_state(nb: dict[str, Any]) -> list[str]:
    """Where ``nb`` carries saved widget state (empty: none)."""
    found = [] if not nb.get("metadata", {}).get("widgets") else ["metadata.widgets"]
    for i, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}) or WIDGET_STATE in output.get("data", {}):
                found.append(f"cell {i} output")
    return found


def _smaller_png(data: str) -> str:
    """The PNG re-encoded with the best zlib compression, its colours reduced to a 256-colour palette when it has
    more (no dithering: the toy scenes and plots lose nothing one can see); kept as it is when that is not smaller.
    A PNG that has a palette already is only re-compressed, so stripping twice changes nothing."""
    from PIL import Image

    raw = base64.b64decode(data)
    image = Image.open(io.BytesIO(raw))
    if image.mode in ("RGB", "RGBA") and image.getcolors(256) is None:
        image = image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return data if len(buf.getvalue()) >= len(raw) else base64.b64encode(buf.getvalue()).decode("ascii")


def strip(nb: dict[str, Any], optimize_png: bool = True) -> dict[str, Any]:
    """Remove the widget state from ``nb`` (in place, and returned) as the module docstring says."""
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            data.pop(WIDGET_VIEW, None)
            data.pop(WIDGET_STATE, None)
            if optimize_png and isinstance(data.get("image/png"), str):
                data["image/png"] = _smaller_png(data["image/png"])
            if "image/png" in data and "image/jpeg" in data:  # two pictures of one image: keep the smaller
                drop = "image/png" if len(data["image/jpeg"]) < len(data["image/png"]) else "image/jpeg"
                data.pop(drop)
                output.get("metadata", {}).pop(drop, None)
    return nb


def dumps(nb: dict[str, Any]) -> str:
    """A notebook as Jupyter writes it."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook has widget state")
    ap.add_argument("--filter", action="store_true", help="read a notebook on stdin, write it stripped to stdout")
    args = ap.parse_args(argv)
    if args.filter:
        sys.stdout.write(dumps(strip(json.loads(sys.stdin.read()))))
        return 0
    dirty = 0
    for path in args.notebooks:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        if args.check:
            where = widget_state(nb)
            if where:
                dirty += 1
                print(f"{path}: saved widget state in {', '.join(where[:3])}; run python tools/strip_notebooks.py "
                      f"{path}")
            continue
        out = dumps(strip(nb))
        if out != text:
            path.write_text(out, encoding="utf-8")
            print(f"{path}: {len(text.encode()) / 1e3:.0f} kB -> {len(out.encode()) / 1e3:.0f} kB")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
