"""The README's tour runs as written, and its two set-up commands are the ones CI uses."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang):
    if not README.exists():
        pytest.skip("README.md not beside the tests (installed elsewhere)")
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "model.npz").exists()


def test_exactly_two_setup_commands():
    commands = [b.strip() for b in _blocks("bash")]
    assert commands[:2] == ['pip install ".[demo]" && python -m pynn demo',
                            'pip install ".[test]" && python -m pytest']
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'python -m pytest' in ci and "README.md" in ci
