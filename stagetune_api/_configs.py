"""Where the project's configuration files are (``configs/``) and its presets by name, read
without torch: the command line checks a job's preset before anything heavy starts."""

from __future__ import annotations

from pathlib import Path

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def default_config_dir() -> Path:
    """``configs/`` at the root of the source tree (the project is installed from it)."""
    return _CONFIG_DIR


def preset_names(config_dir: Path | None = None) -> list[str]:
    """The presets of ``config_dir`` (``presets/<name>.yaml``), by name."""
    root = (config_dir or default_config_dir()) / "presets"
    return sorted(p.stem for p in root.glob("*.yaml"))
