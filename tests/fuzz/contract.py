"""What every fuzz test asserts of a reader's failure: it is one of the project's own error
types (``errors.BAD_INPUT`` / ``errors.FAILED_RUN``: the boundary prints it as one line with exit
code 2 or 1) and its message names the file or key it is about. Never another exception.

Time and memory are bounded by the readers themselves (size caps before decoding: images by
pixel count, presets and text files by bytes), not asserted here: tests never time themselves.
A hang would stop the run at CI's limit and name the test."""

from __future__ import annotations

from pspnet_core.system import errors


def assert_project_error(err: BaseException, *names: str) -> None:
    """``err`` is a known project error whose one-line message contains one of ``names``."""
    kinds = {c.__name__ for c in type(err).__mro__} & (errors.BAD_INPUT | errors.FAILED_RUN)
    assert kinds, f"{type(err).__name__} is not one of the project's error types: {err!r}"
    line = errors.one_line(err)
    assert any(n in line for n in names), f"{line!r} names none of {names}"
