"""The README's examples run, and its CLI transcript is what the CLI prints today."""
import os

import pytest

from ckpt import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def _blocks(lang):
    """The fenced code blocks of the README whose info string is ``lang``."""
    blocks, current = [], None
    for line in README.split("\n"):
        if line.startswith("```"):
            if current is None:
                current = [] if line[3:].strip() == lang else False
            else:
                if current is not False:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif isinstance(current, list):
            current.append(line)
    return blocks


@pytest.mark.parametrize("code", _blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_readme_python_examples_run(code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples may write files (memory.png)
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out  # every example prints what it shows


def test_readme_cli_transcript_is_current(capsys):
    transcripts = [b for b in _blocks("") if b.startswith("$ ckpt ")]
    assert transcripts, "the README shows a CLI example with its output"
    for block in transcripts:
        command, *shown = block.rstrip("\n").split("\n")
        assert cli.main(command.split()[2:]) == 0
        printed = capsys.readouterr().out.rstrip("\n").split("\n")
        rest = iter(printed)
        for line in shown:  # in order; "  ..." stands for lines left out
            if line.strip() == "...":
                continue
            assert any(line == p for p in rest), f"README line not printed: {line!r}"
