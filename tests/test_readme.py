"""The README documents every command and every option (``--help`` and README must not drift apart)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands():
    from lesionkit.cli.app import app

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    yield from walk(typer.main.get_command(app), [])


def test_every_command_and_option_is_in_the_readme():
    text = README.read_text(encoding="utf-8")
    missing = []
    commands = list(_commands())
    assert len(commands) >= 15  # demo, synth, manifest build/validate/show, split, prep, ..., robustness, env
    for name, cmd in commands:
        if f"lesionkit {name}" not in text:
            missing.append(f"command: lesionkit {name}")
        for p in cmd.params:
            for opt in [*p.opts, *p.secondary_opts]:
                # the whole flag: --lr must not be found inside --lr-ratio
                if opt.startswith("--") and opt != "--help" and not re.search(re.escape(opt) + r"(?![\w-])", text):
                    missing.append(f"lesionkit {name}: {opt}")
    assert not missing, "undocumented in README.md:\n" + "\n".join(missing)
