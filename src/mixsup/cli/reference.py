"""Reference pages generated from the code, so that they cannot go stale: the command line
(``docs/cli-reference.md``, from the parser) and the layout (``docs/layout.md``, from each
module's docstring). ``python -m mixsup.cli.reference`` rewrites both; a test compares the
committed pages with this output."""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path

WIDTH = "100"  # argparse wraps help at $COLUMNS


def cli_reference() -> str:
    from mixsup.cli import build_parser

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser, _ = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["# Command-line reference", "",
                 "Generated from the parser by `python -m mixsup.cli.reference`; "
                 "[the command line](cli.md) says what each command is for.", "",
                 "```text", parser.format_help().rstrip(), "```"]
        for name, p in sub.choices.items():
            parts += ["", f"## mixsup {name}", "", "```text", p.format_help().rstrip(), "```"]
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before
    return "\n".join(parts) + "\n"


def layout_reference() -> str:
    """Every package and module of ``src/mixsup`` with the first line of its docstring."""
    root = Path(__file__).resolve().parents[1]
    lines = ["# Layout", "", "Generated from each module's docstring by "
             "`python -m mixsup.cli.reference`; one row per module of `src/mixsup`.", "",
             "| module | what it is |", "|---|---|"]
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = " ".join(doc.strip().split("\n\n")[0].split()) or "(no docstring)"
        cell = first.replace("|", "\\|")
        lines.append(f"| `{name}` | {cell} |")
    return "\n".join(lines) + "\n"


PAGES = {"cli-reference.md": cli_reference, "layout.md": layout_reference}


if __name__ == "__main__":
    docs = Path(__file__).resolve().parents[3] / "docs"
    for page, make in PAGES.items():
        (docs / page).write_text(make())
        print(f"wrote {docs / page}")
