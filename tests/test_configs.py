"""Every file in config/ loads into the script it is written for: no unknown key, no wrong type."""
import glob
import importlib
import os

import pytest

from configurator import configure

SCRIPT = {"data": "generate_pairs", "pretrain": "train_pretrain", "sft": "train_sft", "dpo": "train_dpo",
          "grpo": "train_grpo", "eval": "eval"}


@pytest.mark.parametrize("path", sorted(glob.glob("config/*.py")))
def test_config_file_loads_into_its_script(path):
    stage = os.path.basename(path).split("_")[0]
    module = importlib.import_module(SCRIPT[stage])
    config = configure(dict(vars(module)), [path])  # exits on an unknown key or a wrong type
    written = {}
    exec(open(path).read(), written)
    for key, value in written.items():
        if not key.startswith("__"):
            assert config[key] == value, key
