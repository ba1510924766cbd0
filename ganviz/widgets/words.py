"""Type a word, see the units that respond: top images and a causal check per unit (open-vocabulary labels)."""
from __future__ import annotations

import html
import ipywidgets as W
import numpy as np
import traitlets

from ..imaging import make_grid, png_bytes, to_uint8, upscale
from ..label_checks import LabelCheck
from ..openvocab import WordProbe
from ._base import ViewBase, ViewState, css, hidden_until_set
from .classifier import _caption

__all__ = ["WordSearch"]


class WordState(ViewState):
    """What a :class:`WordSearch` shows."""

    word = traitlets.Unicode("", help="the word or phrase searched for")


class WordSearch(ViewBase):
    """A text box over a :class:`~ganviz.openvocab.WordProbe`: for the typed word, the ``n_units`` units that
    respond most (SoftWPMI), each with its top images and what switching it off does (``probe.check``: for a
    generator, the word's probability for the regenerated samples; for a classifier, the predicted class's
    probability over the unit's top images, which does not depend on the word)."""

    def __init__(self, probe: WordProbe, word: str = "", n_units: int = 6, n_images: int = 6,
                 background: bool = True) -> None:
        super().__init__(background)
        if int(n_units) < 1 or int(n_images) < 1:
            raise ValueError(f"n_units and n_images must be >= 1, got {n_units} and {n_images}")
        self.probe, self.n_units, self.n_images = probe, int(n_units), int(n_images)
        self.text = W.Text(value=word, placeholder="a word: tree, dome, a red door ...", description="Word",
                           continuous_update=False)
        self.button = W.Button(description="Find units", button_style="primary")
        self.table = W.HTML()
        self.strip = hidden_until_set(W.Image(format="png", layout=W.Layout(max_width="100%")))
        self.widget = W.VBox([W.HBox([self.text, self.button]), self.status, self.table, self.strip])
        css(self.widget, "words", self.text, "words-text", self.table, "words-table", self.strip, "words-strip")
        self.state = WordState(word=word)
        traitlets.link((self.text, "value"), (self.state, "word"))
        self.rows: list[tuple[int, float, LabelCheck]] = []
        self._picture: np.ndarray | None = None
        self.text.observe(self.guard(lambda c: self.search()), names="value")
        self.button.on_click(self.guard(lambda b: self.search()))
        self.say(f"type a word to rank the {probe.num_units} units of {probe.layer} "
                 f"({probe.tim.name}, {len(probe.activations)} probe images)")
        if word:
            self.search()

    def search(self) -> None:
        """Rank the units for the current word (in the background)."""
        word = self.text.value.strip()
        if not word:
            self.compute(self._clear)  # also supersedes a search still running
            return
        self.say(f"searching '{word}' ...")
        self.compute(self._search, word)

    def _clear(self) -> None:
        self.rows, self._picture = [], None
        self.table.value, self.strip.value = "", b""
        self.say("type a word first, e.g. 'tree'")

    def _search(self, word: str) -> None:
        scores = self.probe.scores(word)
        units = [int(u) for u in np.argsort(-scores, kind="stable")[: self.n_units]]
        rows = [(u, float(scores[u]), self.probe.check(word, u)) for u in units]
        strips = []
        for u, score, check in rows:
            images = to_uint8(self.probe.images(self.probe.top_images(u, self.n_images)))
            tile = make_grid(images, cols=self.n_images, pad=2)
            tile = upscale(tile, 2) if images.shape[1] < 96 else tile
            strips.append(_caption(tile, f"unit {u}\nscore {score:.2f}\n{check.text()}", width=230))
        picture = make_grid(np.stack(strips), cols=1, pad=4)  # every strip: the same caption and tile sizes
        self.rows, self._picture = rows, picture  # the table, the picture and .rows always agree
        self.strip.value = png_bytes(picture)
        known = "" if self.probe.tim.known(word) else " (some of these words are new to the text model)"
        body = "".join(f"<tr><td>{u}</td><td>{s:.2f}</td><td>{html.escape(c.text())}</td></tr>"
                       for u, s, c in self.rows)
        self.table.value = ("<table class='ganviz-table'><tr><th>unit</th><th>score</th><th>when off</th></tr>"
                            f"{body}</table>")
        confirmed = sum(c.confirmed() for _, _, c in self.rows)
        self.say(f"'{word}': the {len(self.rows)} units of {self.probe.layer} that respond most; {confirmed} of them "
                 f"lower {self.rows[0][2].measure} by >= 5% when switched off{known}")

    def render(self) -> np.ndarray:
        if self._picture is None:
            raise RuntimeError("no word searched yet")
        return self._picture
