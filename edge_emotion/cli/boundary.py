"""The CLI's error boundary: every failure ends in one line on stderr and a non-zero exit, never a traceback.

Why one boundary instead of try/except in each command: commands stay thin (they
raise, they never print-and-exit), and a mistake nobody foresaw still ends in one
line. What counts as the user's side (a path, an option, the wrong kind of file,
a missing package) is an EdgeEmotionError, an OSError or a ValueError: the
library raises those on purpose with a message naming the file and the cause.
Anything else is a bug: one line too, saying so, with the hint to rerun with
`--debug` (or EDGE_EMOTION_DEBUG=1), which prints the traceback as well.

Warnings become one `warning: ...` line each (no source line, no file:lineno).

Exit codes: 0 done; 1 an error in the input or the environment; 2 a usage error
(bad option value, missing argument); 70 an internal error; 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

import typer

from edge_emotion.errors import EdgeEmotionError

# click's exceptions, or the copy of click that typer >= 0.2x vendors (typer._click): whichever typer raises
_click_exceptions = importlib.import_module(typer.BadParameter.__module__)
UsageError: Any = _click_exceptions.UsageError
ClickException: Any = _click_exceptions.ClickException

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
DEBUG_FLAG = "--debug"
DEBUG_ENV = "EDGE_EMOTION_DEBUG"
USER_ERRORS: tuple[type[BaseException], ...] = (EdgeEmotionError, OSError, ValueError, MemoryError)


def wants_debug(args: Sequence[str]) -> bool:
    """--debug among the options before the command name, or EDGE_EMOTION_DEBUG set to a non-empty, non-0 value."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return True
    for arg in args:
        if not arg.startswith("-"):
            return False
        if arg == DEBUG_FLAG:
            return True
    return False


def one_line(text: str) -> str:
    """A message on one line: its lines joined, blank ones dropped."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe_error(exc: BaseException) -> str:
    """The message of a user-side error, naming the file where the exception carries one."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        names = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
        return f"{names}: {exc.strerror}"
    if isinstance(exc, MemoryError):
        return f"out of memory{f' ({exc})' if str(exc) else ''}: try a smaller --batch-size or fewer --workers"
    return one_line(str(exc)) or type(exc).__name__


#: top-level modules only the [train] extra installs
TRAIN_MODULES = ("torch", "torchvision", "onnx", "facenet_pytorch")


def missing_install(exc: ImportError) -> str:
    """What to install when a command's import fails: the [train] extra for the training side."""
    name = (exc.name or "").split(".")[0]
    if name in TRAIN_MODULES or any(f"{m} " in str(exc) or f"'{m}'" in str(exc) for m in TRAIN_MODULES):
        return f"this command needs the training install ({one_line(str(exc))}): pip install 'edge-emotion[train]'"
    return f"a package is missing ({one_line(str(exc))})"


def _error(message: str, err: TextIO | None = None) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True, file=err)


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None, line: str | None = None
) -> None:
    typer.secho(f"warning: {one_line(str(message))}", fg=typer.colors.YELLOW, err=True)


def _usage_message(exc: Any) -> str:
    where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return f"{where}{one_line(exc.format_message())}{hint}"


def run(command: Any, args: Sequence[str], prog_name: str = "edge-emotion") -> int:
    """Run the click command of the app (typer.main.get_command) on `args` inside the boundary -> exit code.

    Nothing is raised but SystemExit (from a command that calls sys.exit itself).
    """
    debug = wants_debug(args)
    with warnings.catch_warnings():  # restores warnings.showwarning on the way out
        warnings.showwarning = _show_warning
        try:
            result: Any = command.main(args=list(args), prog_name=prog_name, standalone_mode=False)
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was the answer (typer prints it itself)
                if exc.format_message().strip():
                    exc.show()
                return EXIT_USAGE
            _debug_traceback(debug)
            _error(_usage_message(exc))
            return EXIT_USAGE
        except ClickException as exc:
            _debug_traceback(debug)
            _error(one_line(exc.format_message()))
            return int(getattr(exc, "exit_code", EXIT_ERROR)) or EXIT_ERROR
        except typer.Abort as exc:
            if isinstance(exc.__cause__, EOFError):
                _error("end of input")
                return EXIT_ERROR
            _error("interrupted")
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            _error("interrupted")
            return EXIT_INTERRUPTED
        except USER_ERRORS as exc:
            _debug_traceback(debug)
            _error(describe_error(exc))
            return EXIT_ERROR
        except ImportError as exc:  # a runtime-only install asked for a training-side command
            _debug_traceback(debug)
            _error(missing_install(exc))
            return EXIT_ERROR
        except Exception as exc:  # a bug, not the user's mistake: still one line, and how to see more
            _debug_traceback(debug)
            hint = "" if debug else f"; rerun with {DEBUG_FLAG} for the traceback"
            _error(f"internal error ({type(exc).__name__}: {describe_error(exc)}){hint}")
            return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def _debug_traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()
