"""The docs send readers to files that exist, and to the folders the engines really read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner.baselines import SGLANG_CONFIG_FOLDERS, VLLM_CONFIG_FOLDER

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "NOTES.md", "configs/README.md", "docs/contracts.md", "studies/landscapes/README.md"]
# Folders whose files the repository holds; studies/ and configs/ also name what a run will write.
SOURCES = ("tuner", "kernels", "benchmarks", "tests", "docs", "notebooks")


@pytest.mark.parametrize("doc", DOCS)
def test_every_cited_source_file_exists(doc):
    cited = re.findall(rf"`((?:{'|'.join(SOURCES)})/[\w./*\[\], =-]*)`", (ROOT / doc).read_text())
    assert cited or doc not in ("README.md", "NOTES.md")
    missing = [path for path in cited if not list(ROOT.glob(path.rstrip("/")))]
    assert not missing, f"{doc} cites {missing}"


def test_the_configs_folder_says_where_each_sglang_release_reads_its_files():
    text = (ROOT / "configs" / "README.md").read_text()
    for folder in SGLANG_CONFIG_FOLDERS:  # the current release's first, then older releases'
        assert f"sglang/{folder}/" in text
    assert f"vllm/{VLLM_CONFIG_FOLDER}/" in text
    assert text.index(f"sglang/{SGLANG_CONFIG_FOLDERS[0]}/") < text.index(f"sglang/{SGLANG_CONFIG_FOLDERS[1]}/")
