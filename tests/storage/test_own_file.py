"""``own_file``: a failure reading one of mixsup's own files is one error naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixsup.errors import MixsupError
from mixsup.storage.user_files import own_file

FIX = "rerun without --resume, or restore it"


def test_an_inner_error_keeps_its_own_fix_before_the_files(tmp_path: Path) -> None:
    with pytest.raises(MixsupError) as err, own_file(tmp_path / "c.yaml", "config", FIX):
        raise MixsupError("unknown key stage9", "upgrade mixsup: a later version wrote it")
    assert err.value.fix == f"upgrade mixsup: a later version wrote it; or {FIX}"
    assert err.value.path == str(tmp_path / "c.yaml")


@pytest.mark.parametrize(("raise_", "says"), [
    (lambda p: p.read_text(), "the summary is missing"),
    (lambda p: json.loads("{"), "the summary is damaged (JSONDecodeError"),
    (lambda p: {}["pools"], "the summary is damaged (KeyError"),
])
def test_a_plain_failure_is_named_with_the_files_fix(tmp_path: Path, raise_, says) -> None:
    path = tmp_path / "summary.json"
    with pytest.raises(MixsupError) as err, own_file(path, "summary", FIX):
        raise_(path)
    assert says in err.value.what and err.value.fix == FIX and err.value.path == str(path)
