"""Progress: a bar on a terminal, a bounded number of status lines in a log, silence when off."""

import io

from dreamlab.core.progress import Progress, progress_mode


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_output_is_a_few_lines_however_many_updates():
    log = io.StringIO()
    bar = Progress(total=10_000, desc="dream", unit="upd", stream=log, every=3600.0)
    for i in range(10_000):
        bar.update(1)
        if i % 100 == 0:
            bar.set_postfix(loss=0.5)
    bar.close()
    bar.close()  # closing twice prints nothing more
    lines = log.getvalue().splitlines()
    assert len(lines) == 1  # only the final status: no redraws into the log file
    assert "dream: 10000/10000 upd (100%)" in lines[0] and "loss 0.5" in lines[0] and "done in" in lines[0]
    assert "\r" not in log.getvalue()


def test_periodic_lines_when_time_passes_and_iteration():
    log = io.StringIO()
    out = list(Progress(range(5), desc="collect", stream=log, every=0.0))
    assert out == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert 2 <= len(lines) <= 6 and lines[-1].startswith("[dreamlab ") and "5/5" in lines[-1]


def test_off_is_silent_and_a_terminal_gets_a_bar():
    log = io.StringIO()
    bar = Progress(total=100, stream=log, enabled=False)
    bar.update(100)
    bar.close()
    assert log.getvalue() == "" and bar.n == 100
    assert progress_mode(False) == "off" and progress_mode(True, _Tty()) == "bar"
    assert progress_mode(True, io.StringIO()) == "lines"
    tty = _Tty()
    bar = Progress(total=3, stream=tty, desc="x")
    bar.update(3)
    bar.close()
    assert "3/3" in tty.getvalue()


def test_stderr_under_capture_gets_one_line_and_off_is_silent(capsys):
    bar = Progress(range(1000), desc="grpo", unit="it")  # default stream: sys.stderr, not a terminal here
    for _ in bar:
        bar.set_postfix(loss=0.25, refresh=False)  # refresh= is tqdm's flag, not a value to show
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1
    assert "grpo: 1000/1000 it (100%)" in lines[0] and "loss 0.25" in lines[0] and "refresh" not in lines[0]
    for _ in Progress(range(1000), desc="grpo", enabled=False):
        pass
    assert capsys.readouterr() == ("", "")
