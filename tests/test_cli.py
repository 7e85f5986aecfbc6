"""The ``radmi`` command: every subcommand has --help, and radmi errors become a one-line message and exit 1."""

from __future__ import annotations

import pytest

from radmi.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"radmi {name}" in capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_a_radmi_error_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "no_such_manifest.csv"
    assert main(["manifest", "check", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "radmi manifest: error:" in err and str(missing) in err
