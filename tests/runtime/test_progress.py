import io

from mixsup.runtime import progress


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


def test_off_a_terminal_status_changes_wait_for_the_next_line(monkeypatch):
    err = _Pipe()
    monkeypatch.setattr(progress.sys, "stderr", err)
    bar = progress.progress_bar(range(100), desc="train", unit="batch")
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
        bar.set_postfix_str(f"slide {i}")
    lines = err.getvalue().splitlines()
    assert len(lines) <= 3  # the start and the end, not one per batch (10 s apart at most)
    assert "100/100" in lines[-1] and "slide 99" in lines[-1]


def test_on_a_terminal_it_is_tqdm_as_usual(monkeypatch):
    class _Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = _Tty()
    monkeypatch.setattr(progress.sys, "stderr", err)
    bar = progress.progress_bar(range(3), desc="work", unit="item")
    assert not isinstance(bar.fp, progress._Lines)
    bar.close()
