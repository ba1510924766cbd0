"""Every Python example in the README runs, in order, in one namespace."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "truth:" in out and "conv5_3" in out and "units with IoU >= 0.04" in out
    assert namespace["ablated"].shape == (1, 8) and namespace["edited"].shape == (1, 3, 64, 64)
    assert namespace["painted"].shape == (64, 64, 3)
    assert "['tree', 'grass', 'sky', 'wall', 'window', 'door']" in out  # the ADE20K parser's concepts
    assert namespace["scene_dissection"].num_units == 512 and namespace["scene_dissection"].layer == "layer4"
    assert namespace["direction_result"].layer == "layer4.basis.features"
    assert namespace["words"].scores.shape == (192, 6) and "units for 'dome'" in out
    assert tuple(namespace["by_words"].concept_names[:2]) == ("tree", "dome") and namespace["by_words"].num_units == 192
    assert "under-produced" in out and "FID" in out and "after fine-tuning" in out
    assert namespace["tuned"].psnr > namespace["inverted"].psnr and namespace["photo_painted"].shape == (64, 64, 3)
    assert len(namespace["painter"].strokes) == 1 and namespace["painter"].inversion is namespace["tuned"]


def test_readme_main_command_opens_the_paint_app():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert blocks[0].strip().endswith("&& ganviz app"), blocks[0]
    assert '-e ".[app]"' in blocks[0]


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    test_cmd = [block for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "pytest" in block]
    assert len(test_cmd) == 1 and test_cmd[0].strip() in ci
