"""Layering, the contract of ``src/mixsup``'s layout: its packages are layers in ``LAYERS``
order, lowest first, and a module imports only from its own package or from lower layers (never
a sibling of its own layer); modules import each other in no loop. Imports inside functions,
under ``TYPE_CHECKING`` and written as strings (``"mixsup.x.y:attr"``,
``importlib.import_module("mixsup.x")``) count as imports. Read from the source (ast), so that
a lazy import cannot hide a dependency; the checker is tested on planted trees.

Then what the source cannot show: prediction, the bundle and inference import no training code,
and commands that neither train nor score import no torch (on the commands as users run them).
Each of those imports runs in a fresh interpreter, so that what this test process has imported
cannot hide (or fake) a dependency."""

from __future__ import annotations

import ast
import json
import math
import pkgutil
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import mixsup
import mixsup.inference

SRC = Path(mixsup.__file__).resolve().parents[1]  # the tree under test: src/

# The layers, lowest first. A package imports from lower layers only; packages that share a
# layer are siblings and import nothing from each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),  # user-facing errors
    ("storage",),  # bytes on disk: atomic writes, user files, records, artefacts
    ("config",),  # the configuration tree, presets, protocols, the run folder
    ("runtime",),  # devices, torchrun, progress, parallel processes
    ("render",),  # heatmaps and figures
    ("slides",),  # reading and tiling slides, patch datasets; knows no labels
    ("labels",),  # the dataset table and annotations; reads no slide
    ("dataset", "synth"),  # slides with their labels; synthetic datasets
    ("models",),  # networks
    ("methods",),  # the modes registry and the bundle
    ("inference",),  # scoring with trained models
    ("evaluate",),  # metrics and reports
    ("train", "predict"),  # neither imports the other
    ("experiment", "camelyon", "view"),  # workflows over training and prediction
    ("cli",),  # the command line
)
# The root package (a lazy public API: import strings by design) and ``python -m mixsup``
# stand above every layer; ``mixsup`` itself (``__version__``) may be imported from anywhere.
TOP = frozenset({"mixsup", "mixsup.__main__"})

# Edges against the order (and the loops they close), each with the reason it stays. Keep
# this short: (importer, the module it names) -> why.
ALLOWED: dict[tuple[str, str], str] = {
    **{(f"mixsup.methods.{method}", target): (
        "a method's typed Mode imports its trainer and scorer, which lie above the table that "
        "lists it (and import it), inside its methods: the commands that read the table start "
        "without torch")
       for method, targets in (("segmenter", ("train.api", "inference.slide")),
                               ("topk_mil", ("train.api", "inference.slide")),
                               ("abmil", ("train.abmil", "inference.attention")))
       for target in (f"mixsup.{t}" for t in targets)},
}
# Modules that import a module named at run time, each with the reason.
DYNAMIC: dict[str, str] = {
    "mixsup": "the public API's table of lazy imports (``_API``), all of them literal strings",
    "mixsup.models.encoders": "the pip package that ships an encoder's ImageNet weights, not "
                              "a mixsup module",
}

IMPORT_STRING = re.compile(r"mixsup(?:\.\w+)+(?::\w+)?")
IMPORT_CALLS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the longest existing module of the imported name)
    kind: str  # module | lazy (in a function) | typing (TYPE_CHECKING) | string
    line: int
    via: str = ""  # for a package run by importing one of its modules: that module

    @property
    def named(self) -> tuple[str, str]:
        """(importer, the module its import names): what ``ALLOWED`` lists."""
        return self.source, self.via or self.target

    def __str__(self) -> str:
        via = f" via {self.via}" if self.via else ""
        return f"{self.source}:{self.line} -> {self.target}{via} ({self.kind})"


def module_files(src: Path) -> dict[str, Path]:
    """Every module and package of ``src/mixsup`` by dotted name."""
    return {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted((src / "mixsup").rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module that importing ``name`` (a module, or a module's attribute) reaches."""
    while name not in modules:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def _imports(tree: ast.Module) -> list[tuple[str, str, int]]:
    """(dotted name, kind, line) of each import in a module, and of each import string; a
    dynamic import (a name not known before run time) is ("", "dynamic", line)."""
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "lazy" if kind == "module" else kind
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit_one(sub, "typing")
                for sub in child.orelse:
                    visit_one(sub, kind)
                continue
            visit_one(child, inner)

    def visit_one(node: ast.AST, kind: str) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, kind, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.extend((f"{node.module}.{a.name}", kind, node.lineno) for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if IMPORT_STRING.fullmatch(node.value):
                found.append((node.value.split(":")[0], "string", node.lineno))
        elif isinstance(node, ast.JoinedStr) and node.values:  # f"mixsup.x.{name}"
            head = node.values[0]
            if (isinstance(head, ast.Constant) and isinstance(head.value, str)
                    and IMPORT_STRING.match(head.value)):
                found.append((head.value.rstrip("."), "string", node.lineno))
            return
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if (name in IMPORT_CALLS and first is not None
                    and not isinstance(first, (ast.Constant, ast.JoinedStr))):
                found.append(("", "dynamic", node.lineno))
        visit(node, kind)

    visit(tree, "module")
    return found


def import_graph(src: Path) -> tuple[list[Edge], list[tuple[str, int]]]:
    """Every import between mixsup's modules (``Edge``), and every dynamic import (module,
    line). Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``: those are edges too,
    except to the importer's own packages."""
    modules = module_files(src)
    edges: set[Edge] = set()
    dynamic = []
    for source, path in modules.items():
        ancestors = {".".join(source.split(".")[:i]) for i in range(1, source.count(".") + 1)}
        if path.name == "__init__.py":
            ancestors.add(source)
        for name, kind, line in _imports(ast.parse(path.read_text(), str(path))):
            if kind == "dynamic":
                dynamic.append((source, line))
                continue
            if name != "mixsup" and not name.startswith("mixsup."):
                continue
            target = _resolve(name, modules)
            if target is None or target == source:
                continue
            edges.add(Edge(source, target, kind, line))
            parts = target.split(".")
            for i in range(2, len(parts)):
                package = ".".join(parts[:i])
                if package not in ancestors:
                    edges.add(Edge(source, package, kind, line, target))
    return sorted(edges, key=lambda e: (e.source, e.line, e.target)), dynamic


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer index, package) of a module; None above every layer (``TOP``) or unlisted."""
    package = module.split(".")[1] if "." in module else ""
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i, package
    return None


def unlisted(src: Path) -> list[str]:
    """Modules in no layer (a new package must be given its place in ``LAYERS``)."""
    return [m for m in module_files(src) if m not in TOP and layer_of(m) is None]


def upward(edges: list[Edge], allowed: dict[tuple[str, str], str]) -> list[Edge]:
    """Edges from a layer into a higher one, or into a sibling of its own layer."""
    bad = []
    for e in edges:
        if e.source in TOP or e.target == "mixsup" or e.named in allowed:
            continue
        here, there = layer_of(e.source), layer_of(e.target)
        if here is None or there is None:  # an unlisted module: ``unlisted`` reports it
            continue
        if there[1] != here[1] and there[0] >= here[0]:
            bad.append(e)
    return bad


def cycles(edges: list[Edge], allowed: dict[tuple[str, str], str]) -> list[list[str]]:
    """Each loop of imports (one per strongly connected group of modules), as a path."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        # the root package's lazy API (strings, imported on attribute access) runs nothing
        if e.named not in allowed and not (e.source in TOP and e.kind == "string"):
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph):  # Tarjan's algorithm, iteratively
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(_loop(sorted(group), graph))
    return groups


def _loop(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One loop through a strongly connected group, from its first module back to it."""
    members, start = set(group), group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest way back
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return group


# -- the contract, on src/mixsup -------------------------------------------------------------

@pytest.fixture(scope="module")
def graph() -> tuple[list[Edge], list[tuple[str, int]]]:
    return import_graph(SRC)


def test_the_layers_are_the_packages():
    """Every package (and top-level module) of src/mixsup has a layer, and every layer's
    package exists."""
    assert unlisted(SRC) == []
    present = {p.stem if p.suffix == ".py" else p.name for p in (SRC / "mixsup").iterdir()
               if p.suffix == ".py" or (p / "__init__.py").is_file()}
    listed = {package for layer in LAYERS for package in layer}
    assert listed <= present, sorted(listed - present)
    assert present - listed == {"__init__", "__main__"}


def test_no_module_imports_from_a_higher_layer(graph):
    bad = upward(graph[0], ALLOWED)
    assert not bad, "imports against the layer order:\n" + "\n".join(map(str, bad))


def test_no_modules_import_each_other_in_a_loop(graph):
    loops = cycles(graph[0], ALLOWED)
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(c) for c in loops)


def test_every_module_named_at_run_time_is_listed(graph):
    assert sorted({m for m, _ in graph[1]}) == sorted(DYNAMIC)


def test_each_allowed_edge_is_still_there(graph):
    """The allow-list does not outlive the imports it lets through."""
    assert set(ALLOWED) <= {e.named for e in graph[0]}


# -- the checker, on planted trees ----------------------------------------------------------
CLEAN = {
    "mixsup/__init__.py": "__version__ = '0'\n",
    "mixsup/errors.py": "class MixsupError(Exception):\n    pass\n",
    "mixsup/storage/__init__.py": "",
    "mixsup/storage/atomic.py": "from mixsup.errors import MixsupError\n",
    "mixsup/config/__init__.py": "from mixsup.config.schema import Config\n",
    "mixsup/config/schema.py": "from mixsup import __version__\nfrom mixsup.storage import atomic"
                               "\n\nclass Config:\n    pass\n",
    "mixsup/config/run.py": "import mixsup.config.schema\n",
    "mixsup/dataset/__init__.py": "",
    "mixsup/dataset/tiles.py": "def tile():\n    from mixsup.config import Config\n",
    "mixsup/synth/__init__.py": "",
    "mixsup/synth/shapes.py": "import importlib\nSCHEMA = importlib.import_module("
                              "'mixsup.config.schema')\n",
}


def _plant(tmp_path: Path, changes: dict[str, str] | None = None) -> Path:
    """A fake src/ tree: ``CLEAN`` with ``changes`` (file -> text)."""
    src = tmp_path / "src"
    for name, text in {**CLEAN, **(changes or {})}.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


def test_the_checker_passes_a_clean_tree(tmp_path):
    """The checks below can pass: a tree that keeps the order has edges but no finding."""
    src = _plant(tmp_path)
    edges, dynamic = import_graph(src)
    assert {e.named for e in edges} >= {("mixsup.dataset.tiles", "mixsup.config"),
                                        ("mixsup.synth.shapes", "mixsup.config.schema")}
    assert upward(edges, {}) == [] and cycles(edges, {}) == []
    assert dynamic == [] and unlisted(src) == []


@pytest.mark.parametrize("code", [
    "from mixsup.config.schema import Config\n",  # at the top
    "def f():\n    from mixsup.config import schema\n",  # lazily, in a function
    "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import mixsup.config.run\n",
    "LOADER = 'mixsup.config.schema:Config'\n",  # an import string
    "import importlib\n\ndef f():\n    return importlib.import_module('mixsup.config.run')\n",
    "def f(name):\n    return __import__(f'mixsup.config.{name}')\n",
])
def test_the_checker_finds_an_upward_import(tmp_path, code):
    edges, _ = import_graph(_plant(tmp_path, {"mixsup/storage/records.py": code}))
    bad = upward(edges, {})
    assert bad and {(e.source, e.target.split(".")[1]) for e in bad} == {
        ("mixsup.storage.records", "config")}
    assert upward(edges, {e.named: "listed" for e in bad}) == []  # the allow-list lets it by


def test_the_checker_finds_an_import_between_siblings(tmp_path):
    """``dataset`` and ``synth`` share a layer: neither imports the other."""
    src = _plant(tmp_path, {"mixsup/synth/layout.py": "import mixsup.dataset.tiles\n"})
    bad = upward(import_graph(src)[0], {})
    assert {e.named for e in bad} == {("mixsup.synth.layout", "mixsup.dataset.tiles")}


@pytest.mark.parametrize("lazy", [False, True])
def test_the_checker_finds_a_loop(tmp_path, lazy):
    back = "def g():\n    from mixsup.storage.atomic import MixsupError\n" if lazy else \
        "from mixsup.storage import atomic\n"
    src = _plant(tmp_path, {"mixsup/storage/atomic.py": "from mixsup.storage.records import g\n",
                            "mixsup/storage/records.py": back})
    edges, _ = import_graph(src)
    assert upward(edges, {}) == []
    assert cycles(edges, {}) == [["mixsup.storage.atomic", "mixsup.storage.records",
                                  "mixsup.storage.atomic"]]


def test_the_checker_finds_a_loop_through_a_package(tmp_path):
    """Importing ``mixsup.config.run`` runs ``mixsup/config/__init__.py`` first."""
    src = _plant(tmp_path, {"mixsup/config/schema.py": "import mixsup.dataset.tiles\n",
                            "mixsup/dataset/tiles.py": "from mixsup.config.run import x\n"})
    loops = cycles(import_graph(src)[0], {})
    assert loops == [["mixsup.config", "mixsup.config.schema", "mixsup.dataset.tiles",
                      "mixsup.config"]]


def test_the_checker_finds_a_module_named_at_run_time(tmp_path):
    src = _plant(tmp_path, {"mixsup/storage/records.py": "import importlib\n\n\ndef load(name):"
                            "\n    return importlib.import_module(name)\n"})
    assert import_graph(src)[1] == [("mixsup.storage.records", 5)]


def test_the_checker_finds_a_package_without_a_layer(tmp_path):
    src = _plant(tmp_path, {"mixsup/extras/__init__.py": ""})
    assert unlisted(src) == ["mixsup.extras"]


# -- what the source cannot show: the imports of a fresh interpreter --------------------------
FORBIDDEN = "mixsup.train"
INFERENCE = sorted(f"mixsup.inference.{m.name}"
                   for m in pkgutil.iter_modules(mixsup.inference.__path__))

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _imported_by(module: str) -> list[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imports ``module``."""
    done = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _training(modules: list[str]) -> list[str]:
    return [m for m in modules if m == FORBIDDEN or m.startswith(FORBIDDEN + ".")]


def test_the_inference_package_lists_its_modules():
    assert {"mixsup.inference.patch_maps", "mixsup.inference.map_store",
            "mixsup.inference.theta2", "mixsup.inference.stores",
            "mixsup.inference.topk"} <= set(INFERENCE)


@pytest.mark.parametrize("module", ["mixsup.predict.engine", "mixsup.predict.qupath",
                                    "mixsup.methods.bundle", "mixsup.inference", *INFERENCE])
def test_module_imports_no_training_code(module):
    modules = _imported_by(module)
    assert module in modules  # the probe really imported it
    assert _training(modules) == [], f"{module} pulls in training code"


def test_the_probe_sees_training_imports():
    """The check above can fail: importing the trainer shows up in the probe's sys.modules."""
    assert "mixsup.train.api" in _training(_imported_by("mixsup.train.api"))


# the annotation reader is imported by the server only when a slide page asks for it
@pytest.mark.parametrize("module", ["mixsup.view.server", "mixsup.view.catalog",
                                    "mixsup.labels.annotations"])
def test_the_viewer_imports_neither_training_code_nor_torch(module):
    """The server holds about 150 MB without torch and 850 MB with it."""
    modules = _imported_by(module)
    assert module in modules
    assert _training(modules) == [] and "torch" not in modules


# -- the commands as users run them ------------------------------------------------------------
# ``python -m mixsup ARGS`` in a fresh interpreter that prints its sys.modules on exit.
HEAVY = ("torch", "timm", "torchvision")
MARK = "imported modules: "
COMMAND_PROBE = f"""
import atexit, json, runpy, sys
atexit.register(lambda: print({MARK!r} + json.dumps(sorted(sys.modules)), flush=True))
sys.argv = ["mixsup", *sys.argv[1:]]
runpy.run_module("mixsup", run_name="__main__", alter_sys=True)
"""
# The viewer refuses to start without OpenSeadragon (a build step); a stub file stands in.
VIEW_PROBE = """
import pathlib, sys
import mixsup.view.assets
mixsup.view.assets.OSD_DIR = pathlib.Path(sys.argv.pop(1))
""" + COMMAND_PROBE


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(FORBIDDEN + ".")]


def _modules(stdout: str) -> list[str]:
    line = next(ln for ln in reversed(stdout.splitlines()) if ln.startswith(MARK))
    return json.loads(line[len(MARK):])


def _run_command(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run([sys.executable, "-c", COMMAND_PROBE, *args], capture_output=True,
                          text=True, timeout=300)
    return done, _modules(done.stdout)


def _commands(shapes_data: Path, predicted: Path, out: Path) -> dict[str, list[str]]:
    """Every command that neither trains nor scores, on real inputs."""
    return {
        "help": ["--help"],
        "info": ["info", str(shapes_data / "slides" / "slide_000.tiff")],
        "validate": ["validate", str(shapes_data)],
        "evaluate": ["evaluate", str(predicted / "predictions.csv"), "--labels",
                     str(shapes_data / "slides.csv"), "--out", str(out / "report")],
        "config": ["config", "--preset", "small"],
        "annotations": ["annotations", str(shapes_data / "annotations" / "slide_000.geojson"),
                        str(out / "mask.png"), "--slide",
                        str(shapes_data / "slides" / "slide_000.tiff")],
        "tile": ["tile", str(shapes_data), "--preset", "tiny", "--out", str(out / "tiles")],
        "synth": ["synth", str(out / "synth"), "--n-slides", "2", "--size", "256"],
        "export-qupath": ["export-qupath", str(predicted), "--out", str(out / "qupath")],
    }


@pytest.mark.parametrize("name", ["help", "info", "validate", "evaluate", "config",
                                  "annotations", "tile", "synth", "export-qupath"])
def test_command_imports_no_torch(name, shapes_data, predicted, tmp_path):
    args = _commands(shapes_data, predicted, tmp_path)[name]
    done, modules = _run_command("-q", *args)
    assert done.returncode == 0, done.stderr
    assert "mixsup.cli" in modules  # the probe really ran the command line
    assert _heavy(modules) == [], f"mixsup {name} imports {_heavy(modules)[:5]}"


def test_the_command_probe_sees_torch(tmp_path):
    """The check above can fail: predict imports torch to read a bundle before refusing it."""
    done, modules = _run_command("predict", str(tmp_path), "--out", str(tmp_path / "pred"))
    assert done.returncode == 2 and "no model bundle" in done.stderr
    assert "torch" in _heavy(modules)


def test_mixsup_view_serves_slides_without_torch(predicted, shapes_data, tmp_path):
    """``mixsup view`` started as a user starts it, then browsed: every slide's page data and
    a full-resolution tile of its slide and its overlay."""
    osd = tmp_path / "osd"
    osd.mkdir()
    (osd / "openseadragon.min.js").write_text("")
    proc = subprocess.Popen([sys.executable, "-c", VIEW_PROBE, str(osd), "view", str(predicted),
                             "--data", str(shapes_data), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"http://\S+", first)
        assert found, f"the viewer did not start: {first!r}"
        browsed = _browse(found[0].rstrip("/"))
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        watchdog.cancel()
    assert proc.returncode == 0, err
    assert browsed[0] == 6 and browsed[1] > 0
    modules = _modules(first + out)
    assert {"mixsup.view.server", "mixsup.view.deepzoom", "mixsup.labels.annotations"} <= set(
        modules)
    assert _heavy(modules) == [], f"mixsup view imports {_heavy(modules)[:5]}"


def _default_sigint() -> None:
    """A test run started in the background of a non-interactive shell ignores SIGINT, and so
    would the viewer it starts: give the viewer Ctrl-C back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _browse(url: str) -> tuple[int, int]:
    """Fetch what the slide pages fetch; the number of slides browsed and of those with
    annotation outlines (read on request)."""
    def get(path: str) -> bytes:
        with urllib.request.urlopen(url + path, timeout=120) as answer:
            return answer.read()

    slides = json.loads(get("/api/slides"))["slides"]
    annotated = 0
    for s in slides:
        page = json.loads(get(f"/api/slides/{s['slide_id']}"))
        assert page["overlay"] is not None
        annotated += page["annotations"] is not None
        for layer, fmt in (("slide", "jpeg"), ("overlay", "png")):
            dzi = get(f"/dzi/{s['slide_id']}/{layer}.dzi").decode()
            w, h = (int(v) for v in re.findall(r'(?:Width|Height)="(\d+)"', dzi))
            level = math.ceil(math.log2(max(w, h)))
            assert get(f"/dzi/{s['slide_id']}/{layer}_files/{level}/0_0.{fmt}")
    return len(slides), annotated
