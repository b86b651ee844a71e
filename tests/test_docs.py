"""The docs as a newcomer meets them: docs/flags.md is what TrainConfig says today, every
relative link of the README and docs/ resolves, the README stays short and opens with the
two set-up commands, every SRX4_* variable the code reads is in docs/environment.md."""
import re

from conftest import REPO
from srx4.train.flags_doc import render

PAGES = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]


def test_flags_md_is_generated_from_today_s_config():
    assert (REPO / "docs" / "flags.md").read_text() == render(), "stale: run python docs/make_flags.py"
    text = render()
    for flag in ("--config", "--session-hours", "--init-weights", "--no-demo", "--run-name"):
        assert f"`{flag}" in text or f"/ {flag}`" in text, flag


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "#")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_the_readme_is_short_and_opens_with_the_two_set_up_commands():
    text = (REPO / "README.md").read_text()
    assert len(text) <= 10_000, len(text)
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert "pip install -r requirements.txt && python src/train.py" in blocks[0]
    assert "python -m pytest" in blocks[1]
    first_screen = "\n".join(text.splitlines()[:45])
    for needed in ("configs/", "docs/", "data/train/lr", "src/predict.py [--weights", "--output DIR"):
        assert needed in first_screen, needed


def test_every_srx4_variable_the_code_reads_is_documented():
    read = set()
    for path in [*(REPO / "src").rglob("*.py"), *(REPO / "kernels").glob("*.py"), REPO / "tests" / "conftest.py"]:
        read |= set(re.findall(r"\b(SRX4_[A-Z0-9_]+)", path.read_text()))
    table = (REPO / "docs" / "environment.md").read_text()
    assert read and not {v for v in read if f"`{v}`" not in table}
