import io

from mixsup import progress


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_off_a_terminal_progress_is_plain_lines(monkeypatch):
    err = _Pipe()
    monkeypatch.setattr(progress.sys, "stderr", err)
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    for _ in progress.progress_bar(range(50), desc="work", unit="item", leave=False):
        pass
    text = err.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith("work") for line in lines)
    assert "50/50" in lines[-1]  # the totals survive leave=False


def test_on_a_terminal_it_is_tqdm_as_usual(monkeypatch):
    class _Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = _Tty()
    monkeypatch.setattr(progress.sys, "stderr", err)
    bar = progress.progress_bar(range(3), desc="work", unit="item")
    assert not isinstance(bar.fp, progress._Lines)
    bar.close()
