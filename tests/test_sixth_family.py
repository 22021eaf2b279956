"""A new family is one file: a sixth family (tests/sixth_family.py), registered only through the environment,
runs the family-parametrised tests, reuse's token identity included, with no other module touched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.families import EXTRA_FAMILIES_VARIABLE, families
from domain.errors import ModelLoadError
from tests.sixth_family import NAME

ROOT = Path(__file__).resolve().parent.parent


def test_the_sixth_family_passes_the_family_parametrised_tests(tmp_path):
    env = {**os.environ, EXTRA_FAMILIES_VARIABLE: "tests.sixth_family"}
    # fp32 only: the nf4 cases run the same code for the family at several times the time on a 2-core machine.
    command = [sys.executable, "-m", "pytest", "tests/test_families.py", "tests/test_reuse.py", "-k", f"{NAME} and not nf4",
               "-v", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'run'}"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = set(re.findall(r"::(\w+)\[[^\]]*\] PASSED", run.stdout))
    assert passed == {
        "test_each_family_answers_text_and_each_input_it_accepts",
        "test_demo_checkpoints_are_built_deterministically",
        "test_answers_with_reuse_are_token_for_token_those_of_a_full_prefill",  # reuse gives a full prefill's tokens
        "test_video_follow_ups_encode_each_clip_once_even_after_a_restart",  # it watches videos, as its twin does
    }, run.stdout[-4000:]


def test_without_the_variable_the_registry_holds_the_built_in_families(monkeypatch):
    monkeypatch.delenv(EXTRA_FAMILIES_VARIABLE, raising=False)
    assert NAME not in families()
    monkeypatch.setenv(EXTRA_FAMILIES_VARIABLE, "tests.sixth_family")
    assert list(families())[-1] == NAME


@pytest.mark.parametrize("value", ["/tmp/evil.py", "tests/sixth_family", "os; rm", "..x"])
def test_the_variable_takes_only_module_names(value, monkeypatch):
    monkeypatch.setenv(EXTRA_FAMILIES_VARIABLE, value)
    with pytest.raises(ModelLoadError, match="not a Python module name"):
        families()


@pytest.mark.parametrize("value, said", [("tests.no_such_family", "cannot be imported"), ("json", "does not define")])
def test_a_module_that_is_missing_or_no_family_is_named_not_a_traceback(value, said, monkeypatch):
    monkeypatch.setenv(EXTRA_FAMILIES_VARIABLE, value)
    with pytest.raises(ModelLoadError, match=said):
        families()
    shown = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, EXTRA_FAMILIES_VARIABLE: value})
    assert shown.returncode == 1 and shown.stderr.startswith("error: ") and "Traceback" not in shown.stderr
