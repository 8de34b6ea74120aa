"""The engine's CLI: every flag's help renders, and --compile defaults by device."""

from __future__ import annotations

import pytest
from llmfleet.engine.cli import build_parser
from llmfleet.engine.config import EngineConfig


def test_serve_help_renders_every_flag(capsys):
    # argparse %-formats help text; a bare % in a field's help once crashed `serve --help`.
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--no-compile" in out and "90% of free" in out


@pytest.mark.parametrize(("flag", "device", "expected"), [
    (None, "cpu", False),   # default: compiling on CPU costs a minute of CPU for ~1.05-1.1x
    (None, "cuda", True),   # default: CUDA graphs
    (True, "cpu", True),
    (False, "cuda", False),
])
def test_compile_default_depends_on_the_device(flag, device, expected):
    assert EngineConfig(model="m", compile=flag).compile_enabled(device) is expected

