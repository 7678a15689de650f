"""The verl plug-in in an environment without verl (the TRL one): it says verl is missing, not something else."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.mark.skipif(importlib.util.find_spec("verl") is not None, reason="verl is installed here")
def test_check_plugin_says_verl_is_not_installed():
    from lgrpo.engines import verl as plugin

    with pytest.raises(RuntimeError, match=r"verl is not installed in this environment.*\.\[verl\]"):
        plugin.check_plugin()
