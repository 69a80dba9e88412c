import json

import pytest

from videomdm.config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict, load_config


def test_presets_and_overrides():
    small = load_config("small")
    assert small.model.width < Config().model.width
    c = load_config("small", ["train.lr=0.001", "model.layers=2", "train.supervision=teacher", "data.fps=30"])
    assert c.train.lr == 0.001 and c.model.layers == 2 and c.train.supervision == "teacher"
    assert isinstance(c.data.fps, float)


def test_round_trip_through_dict():
    c = load_config("small", ["train.seed=7"])
    assert config_from_dict(json.loads(json.dumps(config_to_dict(c)))) == c


@pytest.mark.parametrize("override, message", [
    ("train.nope=1", "unknown config key"),
    ("nope.lr=1", "unknown config key"),
    ("train=1", "unknown config key"),
    ("train.lr=fast", "expects float"),
    ("model.layers=2.5", "expects an integer"),
    ("model.layers=true", "expects an integer"),
    ("train.supervision=4d", "must be one of"),
    ("model.heads=5", "divisible"),
    ("train.steps=0", "positive"),
    ("data.cache_mb=-1", "cache_mb must be ≥ 0"),
    ("model.frames_per_token=0", "frames_per_token must be at least 1"),
    ("train.lr_schedule=linear", "must be one of"),
    ("two_d.low_levels=none", "must be one of"),
    ("data.normalization=feature", "must be one of"),
    ("loss.time_weighting=eps", "must be one of"),
    ("data.root_emphasis=0", "root_emphasis must be positive"),
    ("data.stats_smoothing=-1", "stats_smoothing ≥ 0"),
    ("data.mirror=1.5", r"data.mirror is a probability in \[0, 1\], got 1.5"),
    ("data.mirror=-0.1", r"data.mirror is a probability in \[0, 1\]"),
    ("lr", "section.key=value"),
])
def test_bad_overrides_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_config_files(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"model": {"layers": 3}, "train": {"steps": 10}}))
    c = load_config(good)
    assert c.model.layers == 3 and c.train.steps == 10 and c.model.width == Config().model.width
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nlr = 0.01\n")
    assert load_config(toml).train.lr == 0.01
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"depth": 3}}))
    with pytest.raises(ConfigError, match=r"bad\.json.*model\.depth"):
        load_config(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json"):
        load_config(broken)
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config(tmp_path / "missing.json")


def test_frames_per_token_round_trip_and_old_configs(tmp_path):
    """The key travels with the config, defines the model, and a config saved before it existed loads as k = 1."""
    from videomdm.checkpoint import CheckpointError, check_compatible

    patched = load_config("small", ["model.frames_per_token=2"])
    assert patched.model.frames_per_token == 2
    assert config_from_dict(json.loads(json.dumps(config_to_dict(patched)))) == patched
    old = config_to_dict(load_config("small"))
    del old["model"]["frames_per_token"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert load_config(path) == load_config("small")
    check_compatible(load_config(path), load_config("small"), "old run")
    with pytest.raises(CheckpointError, match="model.frames_per_token"):
        check_compatible(load_config(path), patched, "patched run")


def test_declared_python_minimum_can_import_the_config(tmp_path):
    """pyproject's ``requires-python`` minimum imports ``videomdm.config``: below 3.11 (no ``tomllib``) the TOML
    parser comes from ``tomli``, which pyproject then declares for exactly those versions. The import is run at the
    declared minimum in a subprocess: ``sys.version_info`` is set to it, ``tomllib`` made unimportable and a stand-in
    ``tomli`` provided (the real one is not installed where the suite runs on 3.11+)."""
    import os
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    minimum = min(minor for minor in range(8, 20) if f"3.{minor}" in supported)
    tomli = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "tomli"]
    for minor in range(minimum, 14):
        needs_tomli = minor < 11
        declared = any(r.marker is None or r.marker.evaluate({"python_version": f"3.{minor}"}) for r in tomli)
        assert declared == needs_tomli, f"Python 3.{minor}: tomli {'needed' if needs_tomli else 'not needed'}"

    script = (
        "import sys, types, tomllib\n"
        f"sys.version_info = (3, {minimum}, 0, 'final', 0)\n"
        "stand_in = types.ModuleType('tomli'); stand_in.loads = tomllib.loads\n"
        "sys.modules['tomli'] = stand_in\n"
        "sys.modules['tomllib'] = None\n"  # `import tomllib` now raises ImportError
        "from videomdm import config\n"
        f"assert (config.tomllib is stand_in) == ({minimum} < 11), config.tomllib\n"
        "print(config.load_config(sys.argv[1]).train.lr)\n"
    )
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nlr = 0.01\n")
    result = subprocess.run([sys.executable, "-c", script, str(toml)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.01"
