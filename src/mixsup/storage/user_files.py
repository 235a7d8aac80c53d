"""The one boundary where a user's file becomes bytes, text or a parsed document.

Every parser of a file the user hands over (annotations, slides.csv, config YAML and --set,
predictions and labels CSVs, a prediction folder's JSON) reads it here, so that each gets the
same guarantees: a size cap (``/dev/zero`` is not read to exhaustion), strict UTF-8, JSON and
YAML loads that refuse deep nesting and 4,300-digit integers instead of raising
``RecursionError`` or ``ValueError``, and finite-number checks. Every refusal is a
``MixsupError`` (or the subclass the caller names) that names the file.

mixsup's own folders (a run folder, a bundle, a prediction folder) are user input too: they
are copied between machines and resumed after crashes. Their files are read inside
:func:`own_file`, which turns whatever a damaged one raises into the same kind of error.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mixsup.errors import MixsupError

MiB = 1 << 20
MAX_TEXT_BYTES = 64 * MiB  # config, CSV tables, a prediction folder's JSON
MAX_ANNOTATION_BYTES = 512 * MiB  # whole-slide outlines (QuPath exports run to 100s of MB)
MAX_DEPTH = 64  # nesting of JSON/YAML containers: GeoJSON needs 7, a config 4

ErrorType = type[MixsupError]


def read_bytes(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES,
               error: ErrorType = MixsupError, refuse_longer: bool = True) -> bytes:
    """A file's bytes, at most ``limit`` of them: a larger file is refused, or with
    ``refuse_longer=False`` its first ``limit`` bytes are returned."""
    path = Path(path)
    kind = not_a_file(path)
    if kind:
        raise error(f"cannot read the {what}: it is {kind}, not a regular file",
                    f"pass the {what} itself", path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read the {what} ({exc.strerror or type(exc).__name__})",
                    "check the path and permissions", path) from exc
    if len(raw) > limit and refuse_longer:
        raise error(f"the {what} is larger than {limit / MiB:g} MiB",
                    f"pass the real {what}; a file this large is not one", path)
    return raw[:limit]


def not_a_file(path: Path) -> str:
    """What ``path`` is when it exists and is not a regular file ("a FIFO", "a folder"...),
    else "": reading a FIFO or a socket would wait forever, a device may never end."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return ""  # missing or unreadable: opening it says which
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return ""


def decode_text(raw: bytes, path: str | Path, what: str,
                error: ErrorType = MixsupError) -> str:
    """UTF-8 (a byte-order mark allowed) or a clear error; NUL bytes are refused as binary."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"the {what} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})",
                    "save it as UTF-8", path) from None
    if "\x00" in text:
        raise error(f"the {what} holds NUL bytes (a binary file?)", f"pass the {what} as text",
                    path)
    return text


def read_text(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES,
              error: ErrorType = MixsupError) -> str:
    return decode_text(read_bytes(path, what, limit, error), path, what, error)


def read_csv(path: str | Path, what: str, required: tuple[str, ...],
             error: ErrorType = MixsupError) -> list[dict[str, str]]:
    """A CSV table's rows (line numbers from 2), keys and values stripped. Refused: no header,
    a missing or repeated column (the last would silently win), a row with more fields than
    the header or too few for the required ones (a missing optional field is empty)."""
    text = read_text(path, what, error=error)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # a stray quote, a field over csv's size limit
        raise error(f"the {what} is not a CSV table ({_short(exc)})", "save it as CSV",
                    path) from None
    if not rows:
        raise error(f"the {what} is empty", f"its header must contain {','.join(required)}",
                    path)
    header = [c.strip() for c in rows[0]]
    repeated = sorted({c for c in header if header.count(c) > 1})
    missing = [c for c in required if c not in header]
    if missing or repeated:
        raise error(f"missing column(s) {', '.join(missing)}" if missing else
                    f"column(s) {', '.join(map(repr, repeated))} appear more than once",
                    f"the header must contain {','.join(required)}, each once", path)
    long = [i for i, r in enumerate(rows[1:], start=2) if len(r) > len(header)]
    if long:
        raise error(f"line(s) {', '.join(map(str, long[:10]))} have more fields than the "
                    "header", "quote values that contain commas, or fix the rows", path)
    needed = max(header.index(c) for c in required) + 1 if required else 0
    short = [i for i, r in enumerate(rows[1:], start=2) if r and len(r) < needed]
    if short:
        raise error(f"line(s) {', '.join(map(str, short[:10]))} have fewer fields than the "
                    f"header's {', '.join(required)}", "fill in the missing fields", path)
    return [{c: (r[j].strip() if j < len(r) else "") for j, c in enumerate(header)}
            for r in rows[1:] if r]  # csv gives [] for a blank line


def parse_json(raw: str | bytes, path: str | Path | None, what: str,
               error: ErrorType = MixsupError) -> Any:
    """A JSON document; malformed, too deeply nested or holding a too-long integer is an
    error. NaN and Infinity are kept: callers check numbers with :func:`finite`."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        too_deep(path, what, error)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integer digit limit
        raise error(f"invalid JSON in the {what} ({_short(exc)})",
                    f"write the {what} again", path) from None
    check_depth(doc, path, what, error)
    return doc


def parse_yaml(text: str, path: str | Path | None, what: str,
               error: ErrorType = MixsupError) -> Any:
    """A YAML document through the safe loader (tags that build objects are refused)."""
    if _flow_depth(text) > MAX_DEPTH:  # PyYAML takes seconds to reach its RecursionError
        too_deep(path, what, error)
    try:
        doc = yaml.safe_load(text)
    except RecursionError:
        too_deep(path, what, error)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # ValueError: digit limit
        raise error(f"invalid YAML in the {what} ({_short(exc)})",
                    f"write the {what} as plain YAML (no tags such as !!python)", path) from None
    check_depth(doc, path, what, error)
    return doc


def _flow_depth(text: str) -> int:
    """The deepest nesting of YAML flow brackets outside quotes (an upper bound is enough:
    the document's own depth is checked after loading)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def check_depth(doc: Any, path: str | Path | None, what: str,
                error: ErrorType = MixsupError, limit: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than ``limit`` (walked without recursion; a YAML
    alias shared many times is visited once)."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list | tuple) or id(node) in seen:
            continue
        if depth >= limit:
            too_deep(path, what, error)
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)


def read_json(path: str | Path, what: str, error: ErrorType = MixsupError) -> Any:
    """A JSON file, read and parsed with :func:`read_text`'s and :func:`parse_json`'s checks."""
    return parse_json(read_text(path, what, error=error), path, what, error)


# What reading a damaged file of mixsup's own raises: a truncated archive (BadZipFile,
# EOFError), a list where a record was (TypeError, AttributeError), a missing key (KeyError),
# a value that fails its model (pydantic's ValidationError is a ValueError).
DAMAGE = (ValueError, KeyError, IndexError, TypeError, AttributeError, EOFError,
          OverflowError, zipfile.BadZipFile)


@contextlib.contextmanager
def own_file(path: str | Path, what: str, fix: str) -> Iterator[None]:
    """Read a file that mixsup wrote inside this block: any failure in it is one
    ``MixsupError`` naming the file, with ``fix`` (how to redo or restore it)."""
    try:
        yield
    except MixsupError as exc:  # the inner fix is the specific one; the file's comes after
        both = fix if not exc.fix or exc.fix == fix else f"{exc.fix}; or {fix}"
        raise MixsupError(exc.what, both, exc.path or path) from None
    except FileNotFoundError:
        raise MixsupError(f"the {what} is missing", fix, path) from None
    except OSError as exc:
        raise MixsupError(f"cannot read the {what} ({exc.strerror or type(exc).__name__})",
                          fix, path) from None
    except DAMAGE as exc:
        raise MixsupError(f"the {what} is damaged ({type(exc).__name__}: {_short(exc)})", fix,
                          path) from None


def finite(value: Any, what: str, path: str | Path | None = None,
           error: ErrorType = MixsupError, low: float | None = None,
           high: float | None = None) -> float:
    """``value`` as a finite float in [low, high]; booleans and strings are not numbers."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer past float's range
            number = None
    if number is None or not math.isfinite(number):
        raise error(f"{what} is {_shown(value)}, not a finite number",
                    "write a plain decimal number", path)
    if (low is not None and number < low) or (high is not None and number > high):
        raise error(f"{what} is {number:g}, outside [{low:g}, {high:g}]"
                    if low is not None and high is not None else
                    f"{what} is {number:g}, out of range", "write a value in range", path)
    return number


def parse_number(text: str | None, what: str, path: str | Path | None = None,
                 error: ErrorType = MixsupError, low: float | None = None,
                 high: float | None = None) -> float:
    """A number written as text (a CSV cell, an option), checked as :func:`finite` does."""
    try:
        value = float(text.strip()) if isinstance(text, str) and len(text) < 100 else None
    except ValueError:
        value = None
    if value is None:
        raise error(f"{what} is {_shown(text)}, not a number", "write a plain decimal number",
                    path)
    return finite(value, what, path, error, low, high)


def output_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as a folder to write into, created if needed; a file in the way, or a parent
    that cannot be created or written, is the user's error."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise MixsupError(f"the {what} is a file, not a folder", "pass a folder's path",
                          path) from None
    except OSError as exc:
        raise MixsupError(f"cannot create the {what} ({exc.strerror or type(exc).__name__})",
                          "pass a folder that you can write to", path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MixsupError(f"cannot write into the {what}", "pass a folder that you can write "
                          "to", path)
    return path


NAME_MAX, PATH_MAX = 255, 4095  # bytes, Linux's limits
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")  # NUL, newline...: in no name or path
TOO_LONG = f"the path is too long (names of at most {NAME_MAX} bytes, {PATH_MAX} in all)"


def output_path_problem(raw: str) -> str | None:
    """Why ``raw`` cannot be an output folder's path, or None. Checked before any work: a name
    the file system or the libraries cannot take, and a place where nothing can be created
    (a probe folder is made and removed at the first existing ancestor)."""
    if not raw.strip() or raw == "-":
        return "an output needs a folder's path (got an empty one)" if raw != "-" else (
            "an output is a folder, not '-' (standard output)")
    problem = _plain_name_problem(raw)
    if problem:
        return problem
    if _too_long(os.fsencode(raw)):
        return TOO_LONG
    path = Path(raw)
    if path.exists() and not path.is_dir():
        return "it is a file, not a folder"
    ancestor = path
    while not ancestor.exists():
        if ancestor.is_symlink():  # mkdir would find the name taken
            return f"{ancestor} is a symbolic link to nothing (or a loop of links)"
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so no folder can be made below it"
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".mixsup-probe-", dir=ancestor))
    except OSError as exc:
        return f"nothing can be created in {ancestor} ({exc.strerror or type(exc).__name__})"
    return None


def input_path_problem(raw: str, plain_name: bool = False) -> str | None:
    """Why ``raw`` cannot name a file or folder to read, or None; checked when the arguments
    are read, before any work. Refused: an empty path, a name longer than the file system
    takes (``ENAMETOOLONG``), a symbolic link loop (``ELOOP``), a folder on the way that
    cannot be entered (``EACCES``), whatever else makes ``stat`` fail but a missing file (the
    command says what it expected there). ``plain_name``: also what an output path may not
    hold (``-``, a control character, bytes that are not UTF-8), for a folder that is also
    written into or whose names reach libraries that need UTF-8."""
    if not raw.strip():
        return "a path is needed (got an empty one)"
    if plain_name:
        if raw == "-":
            return "a path is needed, not '-' (standard input)"
        problem = _plain_name_problem(raw)
        if problem:
            return problem
    if "\x00" in raw:
        return "the path holds a NUL byte"
    try:
        encoded = os.fsencode(raw)
    except UnicodeEncodeError:
        return "the path holds characters no file name can"
    if _too_long(encoded):
        return TOO_LONG
    try:
        os.stat(encoded)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return os_problem(exc)
    return None


def _plain_name_problem(raw: str) -> str | None:
    """A control character, or bytes that are not UTF-8 (some libraries cannot open such a
    name): refused in what mixsup writes into."""
    if CONTROL_CHARS.search(raw):
        return "the path holds a control character (a newline?)"
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return "the path is not valid UTF-8 (some libraries cannot open such a name)"
    return None


def _too_long(encoded: bytes) -> bool:
    return len(encoded) > PATH_MAX or any(len(p) > NAME_MAX for p in encoded.split(b"/"))


def os_problem(exc: OSError) -> str:
    """An ``OSError`` of reaching a path, in words."""
    if exc.errno == errno.ENAMETOOLONG:
        return TOO_LONG
    if exc.errno == errno.ELOOP:
        return "the path runs into a symbolic link loop (links that point at each other)"
    if exc.errno == errno.EACCES:
        return "a folder on the path cannot be entered (permission denied)"
    return f"the path cannot be reached ({exc.strerror or type(exc).__name__})"


def too_deep(path: str | Path | None, what: str, error: ErrorType = MixsupError) -> NoReturn:
    raise error(f"the {what} nests more than {MAX_DEPTH} levels deep",
                f"pass a real {what}; none nests this deep", path)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
