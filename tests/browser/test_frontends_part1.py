"""Example notebooks in JupyterLab 4 and Notebook 7, first part: every cell runs, widgets and pictures show,
checked outputs match (frontends.py says what is checked).  The notebooks are split into two files of about equal
run time (measured: notebook 05 alone takes half of this one), which pytest-xdist gives to different workers."""
import pytest

from frontends import FRONT_ENDS, check_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]


@pytest.mark.parametrize("app,path", FRONT_ENDS)
@pytest.mark.parametrize("notebook", ["05_what_a_gan_cannot_generate.ipynb", "08_features_vs_units.ipynb",
                                      "02_ablate_units.ipynb", "04_gan_paint.ipynb", "00_tour.ipynb"])
def test_a_notebook_runs_and_shows_its_widgets(app, path, notebook, browser_context, frontend_workdir, tmp_path,
                                               shots):
    check_notebook(app, path, notebook, browser_context, frontend_workdir, tmp_path, shots)
