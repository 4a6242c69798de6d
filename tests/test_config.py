import pytest

from ulmrec.config import load_config, parse_override, preset_names
from ulmrec.errors import ConfigError


def test_presets_and_overrides():
    assert {"sample", "beauty", "games"} <= set(preset_names())
    cfg = load_config(["games"], ["seed=7", "data.k_core=10", "run_dir=/tmp/x"])
    assert cfg.data.source == "ulmrec" and cfg.data.path.endswith("games-ulmrec")
    assert (cfg.seed, cfg.data.k_core, cfg.run_dir) == (7, 10, "/tmp/x")


def test_unknown_key_is_rejected_with_known_keys():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) data.kcore; known under data:.*k_core"):
        load_config([], ["data.kcore=3"])


def test_bad_values():
    with pytest.raises(ConfigError, match="k_core must be >= 1"):
        load_config([], ["data.k_core=0"])
    with pytest.raises(ConfigError, match=r"data.k_core: expected an integer"):
        load_config([], ["data.k_core=five"])
    with pytest.raises(ConfigError, match=r"data.source: 'nope' is not one of"):
        load_config([], ["data.source=nope"])
    with pytest.raises(ConfigError, match="no config file or preset"):
        load_config(["no-such-preset"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("oops")


def test_yaml_file_preset(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("seed: 3\ndata:\n  k_core: 2\n")
    cfg = load_config([str(p)], ["seed=4"])
    assert (cfg.seed, cfg.data.k_core) == (4, 2)
