"""Annotation file formats: one module each, and the registry that recognises a file's format.

A format is recognised from the file's content, not its name: the first byte says XML or JSON,
then each format of that syntax is asked, in registry order, whether the document is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from mixsup.errors import AnnotationError
from mixsup.labels.formats import asap, imagescope, ncrf, qupath
from mixsup.labels.formats.base import AnnotationFormat, Outline
from mixsup.storage.user_files import MAX_DEPTH, parse_json, too_deep

# NCRF before QuPath: a JSON object with positive/negative lists is NCRF whatever else it holds.
FORMATS: dict[str, AnnotationFormat] = {
    f.name: f for f in (asap.FORMAT, imagescope.FORMAT, ncrf.FORMAT, qupath.FORMAT)}

_SYNTAX_BY_FIRST_BYTE = {b"<": "xml", b"{": "json", b"[": "json"}


def _decode_xml(raw: bytes, path: Path) -> Any:
    try:
        root = ElementTree.fromstring(raw)
    except DefusedXmlException as exc:
        raise AnnotationError(f"refused unsafe XML ({type(exc).__name__})",
                              "export the annotations again; entity definitions are not allowed",
                              path) from exc
    except ElementTree.ParseError as exc:
        raise AnnotationError(f"invalid XML ({exc})", "export the annotations again", path) from exc
    except RecursionError:
        too_deep(path, "annotation file", AnnotationError)
    _check_xml_depth(root, path)
    return root


def _check_xml_depth(root: Any, path: Path) -> None:
    """Refuse elements nested past the JSON limit, walked without recursion."""
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            too_deep(path, "annotation file", AnnotationError)
        stack.extend((child, depth + 1) for child in node)


def _decode_json(raw: bytes, path: Path) -> Any:
    return parse_json(raw, path, "annotation file", AnnotationError)


_DECODERS: dict[str, Callable[[bytes, Path], Any]] = {"xml": _decode_xml, "json": _decode_json}


def parse_outlines(raw: bytes, path: Path) -> list[Outline]:
    """The outlines of one annotation file's content, whatever its format."""
    fmt, doc = recognise(raw, path)
    return fmt.parse(doc, path)


def recognise_syntax(raw: bytes, path: Path) -> str | None:
    """"xml" or "json" from a file's first bytes (None while they are all white space); any
    other first byte is not an annotation file."""
    first = raw.lstrip()[:1]
    if not first:
        return None
    syntax = _SYNTAX_BY_FIRST_BYTE.get(first)
    if syntax is None:
        raise AnnotationError("not an annotation file (expected XML or GeoJSON)",
                              "use ASAP/ImageScope XML or QuPath GeoJSON", path)
    return syntax


def recognise(raw: bytes, path: Path) -> tuple[AnnotationFormat, Any]:
    """A file's format and its decoded document (what that format's parser takes)."""
    syntax = recognise_syntax(raw, path)
    if syntax is None:
        raise AnnotationError("not an annotation file (it is empty or only white space)",
                              "use ASAP/ImageScope XML or QuPath GeoJSON", path)
    doc = _DECODERS[syntax](raw, path)
    for fmt in FORMATS.values():
        if fmt.syntax == syntax and fmt.recognises(doc):
            return fmt, doc
    if syntax == "xml":
        raise AnnotationError(f"unknown XML annotation format (root <{doc.tag}>)",
                              "use ASAP or Aperio ImageScope XML, or QuPath GeoJSON", path)
    raise AnnotationError("JSON is neither a GeoJSON FeatureCollection, a list of features, "
                          "nor NCRF positive/negative lists",
                          "export the annotations as GeoJSON from QuPath", path)
