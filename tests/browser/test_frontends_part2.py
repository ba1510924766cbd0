"""Example notebooks in JupyterLab 4 and Notebook 7, second part (test_frontends_part1.py has the others): every cell
runs, widgets and pictures show, checked outputs match (frontends.py says what is checked)."""
import pytest

from frontends import FRONT_ENDS, check_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]


@pytest.mark.parametrize("app,path", FRONT_ENDS)
@pytest.mark.parametrize("notebook", ["03_dissect_a_gan.ipynb", "10_which_labels_can_you_trust.ipynb",
                                      "09_dissect_a_vit.ipynb", "06_edit_a_real_photo.ipynb",
                                      "07_your_own_models.ipynb", "01_dissect_a_classifier.ipynb"])
def test_a_notebook_runs_and_shows_its_widgets(app, path, notebook, browser_context, frontend_workdir, tmp_path,
                                               shots):
    check_notebook(app, path, notebook, browser_context, frontend_workdir, tmp_path, shots)


def test_a_changed_checked_output_is_a_mismatch():
    """The output check can fail: every notebook has checked cells with text, and a changed digit is reported."""
    import copy
    import json

    from frontends import CHECK_OUTPUT, output_mismatches
    from voila_harness import EXAMPLES

    for path in sorted(EXAMPLES.glob("[0-9][0-9]_*.ipynb")):
        committed = json.loads(path.read_text())
        assert output_mismatches(committed, committed) == []
        checked = [i for i, c in enumerate(committed["cells"])
                   if c["cell_type"] == "code" and "".join(c["source"]).lstrip().startswith(CHECK_OUTPUT)
                   and any(o["output_type"] == "stream" for o in c["outputs"])]
        assert checked, f"{path.name} has no checked cell that prints"
        changed = copy.deepcopy(committed)
        stream = next(o for o in changed["cells"][checked[0]]["outputs"] if o["output_type"] == "stream")
        text = "".join(stream["text"])
        stream["text"] = text.replace(next(ch for ch in text if ch.isdigit() or ch.isalpha()), "#", 1)
        assert [m.split(":")[0] for m in output_mismatches(changed, committed)] == [f"cell {checked[0]}"]
