"""ulmrec sets OpenMP's PASSIVE wait policy before torch loads, unless the user chose one (issue #14)."""

from __future__ import annotations

import os
import subprocess
import sys


def _policy(env: dict) -> str:
    code = "import ulmrec.cli, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_passive_by_default_and_a_users_choice_is_kept():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy(env) == "PASSIVE"
    assert _policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_set_before_torch_is_imported():
    """The policy only works if torch's OpenMP runtime has not started: ``import ulmrec`` loads no torch."""
    code = "import sys, ulmrec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
