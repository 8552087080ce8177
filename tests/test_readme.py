"""README, the one page a new user reads: its commands agree with CI and it sends nobody to a package host."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_lines(text: str) -> list[str]:
    return [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_ci_runs_exactly_the_readme_test_line():
    (ci_line,) = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci_line in _bash_lines(README)


def test_the_cpu_wheel_comes_before_the_main_job_pulls_cuda():
    main_job = README.index("pip install -e . && python -m tuner.run")
    advice = README.index("PyTorch's CPU-only wheel")
    assert main_job < advice < README.index("The tests, on any machine")  # right under the main-job line
    assert "--index-url" in README[advice : advice + 600]


def test_no_url_but_storage_urls():
    # Where packages come from is the user's pip configuration; README names no host.
    schemes = set(re.findall(r"([a-z+]+)://", README))
    assert schemes <= {"sqlite", "postgresql"}, schemes
