"""The lecture app: sections in order, numbers measured in the background, a static deck with every picture.

The real sections on the bundled models are walked in Chromium by tests/browser/test_talk_app.py."""
import threading

from ganviz.apps.talk import Section, Talk

from _factories import flat_view


def _sections(release: threading.Event):
    def slow(m):
        def measure():
            release.wait(10)
            return "slow number"
        return flat_view(20), measure

    def broken(m):
        raise ValueError("this section needs a model that is missing")

    return [Section("a", "First", "claim one", lambda m: (flat_view(10), "number one")),
            Section("b", "Second", "claim two", slow),
            Section("c", "Third", "claim three", broken)]


def test_sections_show_in_order_with_numbers_measured_in_the_background(tmp_path):
    release = threading.Event()
    talk = Talk(_sections(release), models=object())
    assert "1. First" in talk.heading.value and "number one" in talk.number.value
    talk.next.click()
    assert "2. Second" in talk.heading.value and "measuring" in talk.number.value  # the widget did not block
    release.set()
    assert talk.measured(1, timeout=10) == "slow number"
    talk.show(1)
    assert "slow number" in talk.number.value
    talk.next.click()  # a section that fails says why; the talk goes on
    assert "model that is missing" in talk.number.value and talk.body.children == ()
    talk.prev.click()
    assert talk.menu.value == 1


def test_export_writes_one_slide_per_section_with_its_picture(tmp_path):
    release = threading.Event()
    release.set()
    talk = Talk(_sections(release)[:2], models=object())
    deck = talk.export(tmp_path / "deck.html").read_text()
    assert deck.count("<section>") == 2 and deck.count("data:image/png;base64,") == 2
    assert "claim two" in deck and "slow number" in deck
