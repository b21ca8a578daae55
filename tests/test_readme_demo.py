"""The README's demo command, run as a newcomer would: in a fresh clone of what is committed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, free_port

SETUP_TIMEOUT = 1500  # a fresh venv, npm installs, the page build, then the demo


def readme_commands() -> list[str]:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Two commands", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.DOTALL)


def test_the_readme_holds_exactly_two_set_up_commands() -> None:
    assert readme_commands() == ["make demo", "make test"]


@pytest.mark.slow
def test_make_demo_from_a_clean_clone_then_again(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OKAI_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"))
    }
    # Free ports, so a stack already running on this machine is left alone.
    env |= {"OKAI_DEV_ANVIL_PORT": str(free_port()), "OKAI_DEV_WALRUS_PORT": str(free_port())}
    # pip skips byte-compiling the 1.7 GB it installs (10,000 files): the interpreter compiles
    # what the demo imports and writes the .pyc, as it does for any missing one (hence no
    # PYTHONDONTWRITEBYTECODE above). Not PIP_NO_COMPILE=1: pip reads a boolean option's
    # variable as the value of its dest, so that one means compile=1.
    env["PIP_COMPILE"] = "0"
    demo = readme_commands()[0].split()
    try:
        first = subprocess.run(
            demo, cwd=clone, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT
        )
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "okai demo on dev" in first.stdout
        assert re.search(r"^model\s+sha256:[0-9a-f]{64}$", first.stdout, flags=re.MULTILINE)
        # The second run reuses the dataset and the recorded run, and verifies again.
        second = subprocess.run(
            [str(clone / ".venv" / "bin" / "okai"), "--json", "demo"],
            cwd=clone, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr[-3000:]
        steps = {step["name"]: step["status"] for step in json.loads(second.stdout)["steps"]}
        assert steps["push dataset to Walrus"] == "reused"
        assert steps["train on a 2-node local cluster"] == "reused"
        assert steps["record provenance on chain"] == "reused"
        assert steps["verify (deep: every shard re-downloaded)"] == "done"
        deep = next(step for step in json.loads(second.stdout)["steps"] if "deep" in step["name"])
        assert "unregistered host accepted" in deep["detail"]
        assert "trusting the demo's dev account" in deep["detail"]
    finally:
        okai = clone / ".venv" / "bin" / "okai"
        if okai.exists():
            subprocess.run([str(okai), "dev", "down"], cwd=clone, env=env, timeout=60)
