#!/usr/bin/env python3
"""Move ``src/mixsup``'s loose modules into layer packages, and rewrite every reference to them.

Run from the root of a mixsup checkout (the tree as it was before the move), with the project's
Python (it needs ruff, and imports the moved tree to regenerate docs/layout.md)::

    python tools/restructure.py

What it does, in order:

1. refuses to run unless every file to move is there and no target exists (so it runs once);
2. ``git mv`` of every module and package in ``MOVES`` (and of the tests in ``TEST_MOVES``),
   and a new ``__init__.py`` for each new package, whose docstring says what the layer is and
   what it may import (``LAYER_DOCS``);
3. rewrites the references in every tracked text file under ``ROOTS``: dotted names
   (``mixsup.scoring.theta2``, ``"mixsup.modes:attr"``, mock targets, logger names),
   ``from mixsup import x``, paths (``src/mixsup/x.py``, ``tests/test_x.py``), package data,
   and module names quoted in docstrings and docs (````scoring.theta2````);
4. ``ruff check --select I --fix`` on the rewritten Python files (moved imports sort elsewhere);
5. regenerates docs/cli-reference.md and docs/layout.md (``python -m mixsup.cli.reference``);
6. stages what it touched (``git add``), and lists the lines it left over 100 characters.

The rewriting is a table (``MOVES``) plus generic code, so that running it again on a tree
whose files were edited since (but not moved) gives the same layout and the same references.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

PKG = Path("src/mixsup")

# old module or package (under mixsup) -> its new dotted name (under mixsup). A key that is a
# folder today is a package, moved whole with everything in it.
MOVES: dict[str, str] = {
    # storage: bytes on disk
    "atomic": "storage.atomic",
    "user_files": "storage.user_files",
    "records": "storage.records",
    "artefacts": "storage.artefacts",
    # config: the configuration tree, its presets and protocols, the run folder
    "config": "config.schema",
    "protocols": "config.protocols",
    "run": "config.run",
    "presets": "config.presets",
    # runtime: where and how code runs
    "runtime": "runtime.device",
    "dist": "runtime.dist",
    "progress": "runtime.progress",
    "parallel_runs": "runtime.parallel_runs",
    # render: pictures
    "heatmap": "render.heatmap",
    "heatmap_figure": "render.heatmap_figure",
    "plotting": "render.plotting",
    # slides: + the patch datasets read from slides
    "patches": "slides.patches",
    # dataset: slides and labels together
    "tile_dataset": "dataset.tiles",
    "validate": "dataset.validate",
    # methods: the modes and the bundle they export
    "modes": "methods.registry",
    "bundle": "methods.bundle",
    # inference: scoring with trained models
    "scoring": "inference",
    # predict
    "predict": "predict.engine",
    "qupath_export": "predict.qupath",
    # experiment
    "experiment": "experiment.core",
    "experiment_budget": "experiment.budget",
    "experiment_folds": "experiment.folds",
    "experiment_pairs": "experiment.pairs",
    "experiment_runs": "experiment.runs",
    "experiment_cluster": "experiment.cluster",
}

# new package -> the module whose public names its __init__ re-exports, so that the old import
# keeps working (``from mixsup.config import Config``). Nowhere else: no shims.
REEXPORTS: dict[str, str] = {"config": "schema"}

# The docstring of each new package's __init__: what the layer is, what it may import. The
# order of the layers is tests/test_layering.py's.
LAYER_DOCS: dict[str, str] = {
    "storage": (
        "Storage: atomic writes, the one boundary where a user's file is read, typed JSON records\n"
        "and a run's artefacts (checkpoints, weights, arrays). Imports only ``errors``."),
    "config": (
        "Configuration: the frozen config tree (``schema``, re-exported here), its presets, the\n"
        "paper protocol and the run folder. May import ``storage`` and ``errors``."),
    "runtime": (
        "Where and how code runs: devices and seeds (``device``), torchrun (``dist``), progress\n"
        "output and parallel runs. May import ``config``, ``storage`` and ``errors``."),
    "render": (
        "Pictures: stitched heatmaps, the heatmap figure and plots without pyplot. May import\n"
        "``runtime``, ``config``, ``storage`` and ``errors``."),
    "dataset": (
        "A dataset's slides with their labels: every slide tiled (``tiles``) and ``mixsup\n"
        "validate``; the one layer that knows both. May import ``slides``, ``labels`` and below."),
    "methods": (
        "The training methods: the modes registry (trainer, builder and scorer of each, named by\n"
        "import string) and the bundle a run exports. May import ``models`` and below."),
    "predict": (
        "``mixsup predict`` (``engine``) and the QuPath export of its folder. May import\n"
        "``evaluate``, ``inference``, ``methods`` and below; never ``train``."),
    "experiment": (
        "``mixsup experiment``: runs, folds, paired comparisons and the label-budget curve. May\n"
        "import ``train``, ``predict`` and every layer below them."),
}

# Tests that follow their module into a mirrored folder (the folders get an empty __init__.py,
# as the others have).
TEST_MOVES: dict[str, str] = {
    "tests/scoring": "tests/inference",
    "tests/test_artefacts.py": "tests/storage/test_artefacts.py",
    "tests/test_runtime.py": "tests/runtime/test_device.py",
    "tests/test_progress.py": "tests/runtime/test_progress.py",
    "tests/test_parallel_runs.py": "tests/runtime/test_parallel_runs.py",
    "tests/test_heatmap_figure.py": "tests/render/test_heatmap_figure.py",
    "tests/test_patches.py": "tests/slides/test_patches.py",
    "tests/test_bundle.py": "tests/methods/test_bundle.py",
    "tests/test_predict.py": "tests/predict/test_engine.py",
    "tests/test_qupath_export.py": "tests/predict/test_qupath.py",
    "tests/test_experiment.py": "tests/experiment/test_core.py",
    "tests/test_experiment_budget.py": "tests/experiment/test_budget.py",
    "tests/test_experiment_folds.py": "tests/experiment/test_folds.py",
    "tests/test_experiment_pairs.py": "tests/experiment/test_pairs.py",
    "tests/test_experiment_cluster.py": "tests/experiment/test_cluster.py",
}

# Old names that, written without ``mixsup.`` (````modes````, ``user_files.not_a_file``), can
# only mean the module. Others (config, run, predict, bundle, runtime...) are also config
# sections, commands or folders, and are left alone there.
BARE = ("artefacts", "atomic", "user_files", "protocols", "parallel_runs", "tile_dataset",
        "modes", "heatmap_figure", "plotting", "qupath_export", "experiment_budget",
        "experiment_folds", "experiment_pairs", "experiment_runs", "experiment_cluster",
        "scoring")
BARE_PACKAGES_NEED_A_DOT = ("scoring",)  # ``scoring`` alone is a word; ``scoring.topk`` is not

ROOTS = ("src", "tests", "benchmarks", "docs", "scripts", "README.md", "Makefile",
         "pyproject.toml", "mkdocs.yml")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".ini"}
TEXT_NAMES = {"Makefile"}
WIDTH = 100

# Rewritten text is marked with these until the end, so that no rule rewrites another's output.
DOT, SLASH = "\ue000", "\ue001"
NOT_AFTER = rf"\w.{DOT}{SLASH}"  # a name starts after none of these (the marks: a rewritten one)


def fail(message: str) -> None:
    sys.exit(f"restructure: {message}")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


# -- the table, as paths ---------------------------------------------------------------------

OLD_PACKAGES: set[str] = set()  # the keys of MOVES that are folders (read before moving)


def read_layout() -> None:
    OLD_PACKAGES.update(o for o in MOVES if (PKG / o.replace(".", "/")).is_dir())


def old_path(old: str) -> Path:
    """The file or folder of an old module or package."""
    folder = PKG / old.replace(".", "/")
    return folder if old in OLD_PACKAGES else folder.with_suffix(".py")


def new_path(old: str) -> Path:
    target = PKG / MOVES[old].replace(".", "/")
    return target if old in OLD_PACKAGES else target.with_suffix(".py")


def new_packages() -> list[str]:
    """The packages the move creates (the first part of a new name that is no package yet)."""
    made = []
    for new in MOVES.values():
        head = new.split(".")[0]
        if "." in new and head not in made and not (PKG / head).is_dir():
            made.append(head)
    return sorted(made)


def _few(paths: list[str]) -> str:
    return ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")


def preflight() -> None:
    if not (PKG / "__init__.py").is_file() or not Path(".git").exists():
        fail("run me from the root of a mixsup git checkout (src/mixsup not found)")
    read_layout()
    missing = [str(old_path(o)) for o in MOVES if not old_path(o).exists()]
    missing += [t for t in TEST_MOVES if not Path(t).exists()]
    if missing:
        fail(f"nothing to move at {_few(missing)}: already restructured? Refusing.")
    packages = new_packages()
    taken = [str(new_path(o)) for o in MOVES if new_path(o).exists()]
    taken += [t for t in TEST_MOVES.values() if Path(t).exists()]
    taken += [str(PKG / p / "__init__.py") for p in packages if (PKG / p / "__init__.py").exists()]
    if taken:
        fail(f"{_few(taken)} exist already: already restructured? Refusing.")
    undocumented = sorted(set(packages) - set(LAYER_DOCS))
    if undocumented:
        fail(f"no LAYER_DOCS entry for the new packages {undocumented}")


# -- moving ----------------------------------------------------------------------------------

def git_mv(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    git("mv", str(src), str(dst))


def move_files(packages: list[str]) -> list[Path]:
    """``git mv`` everything, then write the new ``packages``' __init__ files (returned)."""
    written = []
    for old in sorted(MOVES, key=lambda o: (o in OLD_PACKAGES, o)):  # modules first
        git_mv(old_path(old), new_path(old))
    for package in packages:
        init = PKG / package / "__init__.py"
        init.write_text(init_text(package))
        written.append(init)
    for src, dst in sorted(TEST_MOVES.items()):
        folder = Path(dst).parent
        new_folder = not folder.exists()
        git_mv(Path(src), Path(dst))
        if new_folder and not (folder / "__init__.py").exists():
            (folder / "__init__.py").write_text("")
            written.append(folder / "__init__.py")
    return written


def public_names(path: Path) -> list[str]:
    """The public names a module defines at its top level (not those it imports)."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif hasattr(ast, "TypeAlias") and isinstance(node, ast.TypeAlias):
            names.append(node.name.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def _all_order(name: str) -> tuple[int, str]:
    """ruff's (isort-style) order of imported names and ``__all__``: CONSTANTS, Classes,
    functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def init_text(package: str) -> str:
    text = f'"""{LAYER_DOCS[package]}"""\n'
    if package in REEXPORTS:
        module = REEXPORTS[package]
        names = public_names(PKG / package / f"{module}.py")
        names.sort(key=_all_order)
        text += (f"\nfrom mixsup.{package}.{module} import (\n"
                 + "".join(f"    {n},\n" for n in names) + ")\n")
        text += "\n__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]\n"
    return text


# -- rewriting -------------------------------------------------------------------------------

def reexported() -> dict[str, set[str]]:
    """Re-exporting package -> the names its __init__ re-exports (read after the move)."""
    return {p: set(public_names(PKG / p / f"{m}.py")) for p, m in REEXPORTS.items()}


def mark(dotted: str) -> str:
    return dotted.replace(".", DOT)


def map_module(parts: list[str]) -> list[str] | None:
    """``[old, *rest]`` (names under mixsup) -> the new parts, or None where nothing moved."""
    head, rest = parts[0], parts[1:]
    if head not in MOVES:
        return None
    if head in REEXPORTS and not rest:  # the package itself re-exports the old module
        return None
    return MOVES[head].split(".") + rest


DOTTED = re.compile(rf"(?<![{NOT_AFTER}])mixsup((?:\.[A-Za-z_]\w*)+)")


def _dotted(m: re.Match) -> str:
    new = map_module(m[1][1:].split("."))
    return m[0] if new is None else mark("mixsup." + ".".join(new))


# src/mixsup/x.py, mixsup/scoring/...: a module's file, or a moved package's folder
PATH = re.compile(rf"(?<![{NOT_AFTER}-])((?:src/)?mixsup/)(\w+)(\.py\b|/)")


def _path(m: re.Match) -> str:
    name, end = m[2], m[3]
    if name not in MOVES or (end == "/") != (name in OLD_PACKAGES):
        return m[0]
    return (m[1] + MOVES[name].replace(".", "/") + end).replace("/", SLASH)


# ``scoring.theta2.mean_of_valid``, ``modes``, `user_files.not_a_file`: quoted module names
SPAN = re.compile(r"(?<!`)(`{1,2})([A-Za-z_]\w*(?:\.\w+)*)(\(\))?\1(?!`)(?P<after> \w+)?")


def _bare(parts: list[str]) -> list[str] | None:
    if parts[0] not in BARE or (parts[0] in BARE_PACKAGES_NEED_A_DOT and len(parts) == 1):
        return None
    return map_module(parts)


def _span(m: re.Match) -> str:
    parts = m[2].split(".")
    new = None if parts[-1] == "py" else _bare(parts)  # a file name: BARE_FILE's
    if new is None:
        return m[0]
    after = m["after"] or ""
    if after.strip() == new[-1]:  # ``modes`` registry: ``methods.registry``, said once
        after = ""
    return m[1] + mark(".".join(new)) + (m[3] or "") + m[1] + after


# outside Python code (docs, comments): artefacts.py, `bundle.py`, artefacts.read_weights
BARE_FILE = re.compile(rf"(?<![{NOT_AFTER}/-])(\w+)\.py\b")
BARE_DOTTED = re.compile(rf"(?<![{NOT_AFTER}/`-])({'|'.join(BARE)})\.(?!py\b)([A-Za-z_]\w*)")


def _bare_file(m: re.Match) -> str:
    name = m[1]
    if name not in MOVES or name in OLD_PACKAGES:
        return m[0]
    return (MOVES[name].replace(".", "/") + ".py").replace("/", SLASH)


def _bare_dotted(m: re.Match) -> str:
    new = _bare([m[1], m[2]])
    return m[0] if new is None else mark(".".join(new))


def prose(text: str) -> str:
    """The rules for text that is not Python code: docs, comments."""
    return BARE_DOTTED.sub(_bare_dotted, BARE_FILE.sub(_bare_file, text))


# the tests that moved, as paths and as dotted module names
def _test_path(path: str) -> str | None:
    for old in sorted(TEST_MOVES, key=len, reverse=True):
        if path == old or path.startswith(old + "/"):
            return TEST_MOVES[old] + path[len(old):]
    return None


TEST_PATH = re.compile(rf"(?<![{NOT_AFTER}-])tests/[\w/]*\w(?:\.py\b)?")
TEST_DOTTED = re.compile(rf"(?<![{NOT_AFTER}])tests((?:\.\w+)+)")


def _test_path_sub(m: re.Match) -> str:
    new = _test_path(m[0])
    return m[0] if new is None else new.replace("/", SLASH)


def _test_dotted(m: re.Match) -> str:
    parts = m[0].split(".")
    for n in range(len(parts), 1, -1):
        stem = "/".join(parts[:n])
        new = _test_path(stem) or _test_path(stem + ".py")
        if new is not None:
            return mark(".".join([*new.removesuffix(".py").split("/"), *parts[n:]]))
    return m[0]


def rewrite_comments(text: str) -> str:
    """The prose rules on a Python file's comments."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    edits = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            a = starts[tok.start[0] - 1] + tok.start[1]
            b = starts[tok.end[0] - 1] + tok.end[1]
            new = prose(tok.string)
            if new != tok.string:
                edits.append((a, b, new))
    for a, b, new in reversed(edits):
        text = text[:a] + new + text[b:]
    return text


def rewrite_imports(text: str, path: Path, exports: dict[str, set[str]]) -> str:
    """``from mixsup import moved`` -> ``from mixsup.new import moved``; imports of names a
    re-exporting package does not re-export (or from inside it) -> its module."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    inside = path.parts[2] if path.parts[:2] == PKG.parts and len(path.parts) > 3 else None
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
            continue
        a = starts[node.lineno - 1] + node.col_offset
        b = starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]
        pkg = node.module.removeprefix("mixsup.")
        if node.module == "mixsup":
            moved = [al for al in node.names if al.name in MOVES and al.name not in REEXPORTS]
            if not moved:
                continue
            kept = [al for al in node.names if al not in moved]
            stmts = []
            if kept:
                stmts.append("from mixsup import " + ", ".join(
                    al.name + (f" as {al.asname}" if al.asname else "") for al in kept))
            for al in moved:
                parent, _, leaf = MOVES[al.name].rpartition(".")
                alias = al.asname or al.name
                stmts.append(f"from {mark('.'.join(['mixsup', parent]).rstrip('.'))} import "
                             f"{leaf}" + (f" as {alias}" if alias != leaf else ""))
            edits.append((a, b, ("\n" + " " * node.col_offset).join(stmts)))
        elif pkg in REEXPORTS and node.module == f"mixsup.{pkg}":
            names = {al.name for al in node.names}
            if inside == pkg or not names <= exports[pkg]:
                segment = text[a:b]
                edits.append((a, b, segment.replace(
                    node.module, mark(f"{node.module}.{REEXPORTS[pkg]}"), 1)))
    for a, b, new in sorted(edits, reverse=True):
        text = text[:a] + new + text[b:]
    return text


TEST_DEPTH = re.compile(r"(Path\(__file__\)(?:\.resolve\(\))?\.parents\[)(\d+)(\])")


def rewrite(text: str, path: Path, exports: dict[str, set[str]], depth: int) -> str:
    if path.suffix == ".py":
        text = rewrite_comments(text)
        text = rewrite_imports(text, path, exports)
        if depth:
            text = TEST_DEPTH.sub(lambda m: f"{m[1]}{int(m[2]) + depth}{m[3]}", text)
    text = DOTTED.sub(_dotted, text)
    text = PATH.sub(_path, text)
    text = SPAN.sub(_span, text)
    text = TEST_PATH.sub(_test_path_sub, text)
    text = TEST_DOTTED.sub(_test_dotted, text)
    if path.suffix != ".py":
        text = prose(text)
    if path.name == "pyproject.toml":  # package data, relative to src/mixsup
        text = re.sub(r'(?<=")(\w+)/', lambda m: m[0] if m[1] not in MOVES else
                      (MOVES[m[1]].replace(".", "/") + "/").replace("/", SLASH), text)
    return text.replace(DOT, ".").replace(SLASH, "/")


def _cut(line: str, floor: int) -> int | None:
    """Where to break a line that is too long: its last space within the width, past ``floor``."""
    cut = line.rfind(" ", 0, WIDTH + 1)
    return cut if cut > floor else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def reflow(text: str) -> str:
    """Prose that a longer name pushed past the width, carried to the next line: comment lines,
    and lines of triple-quoted strings (docstrings). Code lines are left as they are."""
    lines = text.split("\n")
    spans = [(t.start, t.end) for t in tokenize.generate_tokens(io.StringIO(text).readline)
             if t.type == tokenize.STRING and t.string.lstrip("rbuRBU")[:3] in ('"""', "'''")]
    comments = {t.start[0] - 1 for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type == tokenize.COMMENT and not lines[t.start[0] - 1][:t.start[1]].strip()}
    inserted = 0  # lines added above the current token, by spans already reflowed

    def fits(row: int) -> bool:
        return len(lines[row]) <= WIDTH or "noqa" in lines[row] or "://" in lines[row]

    for (r0, c0), (r1, _c1) in spans:
        row, last = r0 - 1 + inserted, r1 - 1 + inserted
        while row <= last:
            if fits(row):
                row += 1
                continue
            line = lines[row]
            indent = c0 if row == r0 - 1 + inserted else _indent(line)
            cut = _cut(line, max(indent, _indent(line) + 3))
            if cut is None:
                row += 1
                continue
            lines[row], tail = line[:cut].rstrip(), line[cut + 1:]
            nxt = lines[row + 1] if row < last else ""
            if row < last and nxt.strip() and _indent(nxt) == indent and not \
                    nxt.lstrip().startswith(('"""', "'''", "-", "*", ">>>")):
                lines[row + 1] = " " * indent + tail + " " + nxt.lstrip()
            else:
                lines.insert(row + 1, " " * indent + tail)
                last += 1
                inserted += 1
                comments = {c + (c > row) for c in comments}
            row += 1
    for row in sorted(comments, reverse=True):
        while not fits(row):
            line = lines[row]
            indent = _indent(line)
            cut = _cut(line, indent + 2)
            if cut is None:
                break
            lines[row], tail = line[:cut].rstrip(), line[cut + 1:]
            nxt = lines[row + 1] if row + 1 < len(lines) else ""
            if (row + 1 in comments and _indent(nxt) == indent
                    and nxt.lstrip()[1:2] == " " and nxt.lstrip()[2:3] not in ("-", "")):
                lines[row + 1] = " " * indent + "# " + tail + " " + nxt.lstrip()[2:]
            else:
                lines.insert(row + 1, " " * indent + "# " + tail)
            row += 1
    return "\n".join(lines)


def text_files() -> list[Path]:
    files = git("ls-files", "-z", "--", *ROOTS).split("\0")
    return sorted(Path(f) for f in files if f and Path(f).is_file() and (
        Path(f).suffix in TEXT_SUFFIXES or Path(f).name in TEXT_NAMES))


# -- after -----------------------------------------------------------------------------------

def tool(name: str) -> list[str]:
    here = Path(sys.executable).parent / name
    return [str(here)] if here.exists() else [sys.executable, "-m", name]


def sort_imports(files: list[Path]) -> None:
    py = [str(f) for f in files if f.suffix == ".py"]
    if py:
        subprocess.run([*tool("ruff"), "check", "--select", "I", "--fix", "--quiet",
                        "--no-cache", *py], check=True)


def regenerate_docs() -> list[Path]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path("src").resolve()), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-m", "mixsup.cli.reference"], env=env, check=True,
                          capture_output=True, text=True)
    written = [Path(line.removeprefix("wrote ")) for line in done.stdout.splitlines()
               if line.startswith("wrote ")]
    root = Path.cwd().resolve()
    if not written or any(root not in w.resolve().parents for w in written):
        fail(f"mixsup.cli.reference wrote {written}, not into {root}/docs")
    return [w.resolve().relative_to(root) for w in written]


def long_lines(files: list[Path], before: dict[Path, str]) -> list[str]:
    """Python lines the rewriting left over the width (code, which ``reflow`` leaves alone)."""
    found = []
    for f in files:
        if f.suffix != ".py":
            continue
        old = set(before.get(f, "").splitlines())
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if len(line) > WIDTH and line not in old and "noqa" not in line:
                found.append(f"{f}:{n}: {len(line)} characters")
    return found


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    preflight()
    depth = {Path(dst): len(Path(dst).parts) - len(Path(src).parts)
             for src, dst in TEST_MOVES.items() if not Path(src).is_dir()}
    written = move_files(new_packages())
    git("add", "--", *map(str, written))
    exports = reexported()
    changed = []
    before = {}
    for f in text_files():
        if f in written:  # written in the new names already
            continue
        old = before[f] = f.read_text()
        new = rewrite(old, f, exports, depth.get(f, 0))
        if f.suffix == ".py" and new != old:
            new = reflow(new)
        if new != old:
            f.write_text(new)
            changed.append(f)
    touched = sorted(set(changed) | set(written))
    sort_imports(touched)
    docs = regenerate_docs()
    git("add", "--", *map(str, sorted(set(touched) | set(docs))))
    print(f"moved {len(MOVES)} modules and packages and {len(TEST_MOVES)} tests; created "
          f"{len(written)} __init__ files; rewrote {len(changed)} files; regenerated "
          f"{', '.join(map(str, docs))}")
    for line in long_lines(touched, before):
        print(f"over {WIDTH} characters: {line}")


if __name__ == "__main__":
    main()
