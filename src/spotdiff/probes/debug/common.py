"""Framework-free measuring helpers the per-framework probes share (imported only in children).

Every helper reads what actually happened (stdout, traceback objects, pdb's own output) and
compares it with the marker lines of `user_model.py`; nothing here knows a framework's answer.
"""

from __future__ import annotations

import contextlib
import io
import os
import pdb
import re
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

from spotdiff.probes.debug import user_model

USER_FILE = os.path.realpath(user_model.__file__)
SPOTDIFF_DIR = os.path.dirname(os.path.dirname(os.path.dirname(USER_FILE)))  # src/spotdiff
MESSAGE_CHARS = 200


def first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:MESSAGE_CHARS]


def exception_name(error: BaseException) -> str:
    kind = type(error)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"


def _is_user_file(filename: str) -> bool:
    return os.path.realpath(filename) == USER_FILE


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def mentions_line(text: str, line: int) -> bool:
    """Whether `text` points at user_model.py's `line` (traceback or `file:line` style)."""
    name = re.escape(os.path.basename(USER_FILE))
    styles = rf'{name}", line {line}\b|{name}:{line}\b|{name}\({line}\)|{name} \(L{line}\)'
    return re.search(styles, text) is not None


def traceback_facts(error: BaseException, line: int, extra_text: str = "") -> dict[str, Any]:
    """Where the raised exception points: user frame, frame counts, what its message names."""
    frames = traceback.extract_tb(error.__traceback__)
    user = [f for f in frames if _is_user_file(f.filename)]
    outside = [f for f in frames if not os.path.realpath(f.filename).startswith(SPOTDIFF_DIR)]
    messages = "\n".join(str(e) for e in _chain(error)) + "\n" + extra_text
    return {
        "exception": exception_name(error),
        "message": first_line(error),
        "message_lines": len(str(error).splitlines()),
        "user_frame": any(f.lineno == line for f in user),
        "message_names_line": mentions_line(messages, line),
        "frames_total": len(frames),
        "frames_user": len(user),
        "frames_framework": len(outside),
    }


def timed_error(call: Callable[[], Any]) -> tuple[BaseException | None, float, str]:
    """Run `call`; return (the exception or None, seconds until it returned/raised, warnings text)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
            error = None
        except Exception as raised:  # the probe's subject: any framework error
            error = raised
    seconds = time.perf_counter() - start
    return error, seconds, "\n".join(str(w.message) for w in caught)


def count_prints(run_steps: Callable[[], None]) -> tuple[int, str]:
    """Run `run_steps` with stdout captured; (lines printed by the probe print, first such line)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        run_steps()
    lines = [ln for ln in buffer.getvalue().splitlines() if ln.startswith(user_model.PRINT_TAG)]
    return len(lines), (lines[0][len(user_model.PRINT_TAG):].strip()[:120] if lines else "")


def _runs(code_name: str, function: str) -> bool:
    """A frame runs `function` itself or a renamed copy of it (AutoGraph writes `tf__<name>`)."""
    return code_name == function or code_name.endswith(f"_{function}")


def post_mortem(error: BaseException, line: int, function: str, local: str = "h") -> dict[str, Any]:
    """Drive pdb.post_mortem with scripted commands: go up to the forward's frame, print `local`.

    The target is the user's file; failing that, any frame running a function of that name
    (a renamed copy, e.g. one AutoGraph generated), which is where a developer would land instead.
    """
    frames = list(traceback.walk_tb(error.__traceback__))
    user = [i for i, (f, _) in enumerate(frames) if _is_user_file(f.f_code.co_filename)]
    named = [i for i, (f, _) in enumerate(frames) if _runs(f.f_code.co_name, function)]
    facts: dict[str, Any] = {"reached_user_frame": False, "reached_forward": False, "forward_file": None,
                             "read_local": False, "local_type": None, "local_repr": None,
                             "pdb_frames": len(frames)}
    if not (user or named):
        facts["reason"] = f"no frame of user_model.py or of {function}() in the traceback pdb receives"
        return facts
    ups = len(frames) - 1 - (user or named)[-1]  # pdb starts at the innermost frame
    script = [f"up {ups}"] if ups else []
    script += [f"p ('@@TYPE', type({local}).__module__ + '.' + type({local}).__name__)", f"p {local}", "q"]
    output = io.StringIO()
    commands = io.StringIO("\n".join(script) + "\n")
    debugger = pdb.Pdb(stdin=commands, stdout=output, readrc=False, nosigint=True)
    debugger.reset()
    with contextlib.suppress(pdb.bdb.BdbQuit):
        debugger.interaction(None, error.__traceback__)
    text = output.getvalue().replace("(Pdb) ", "")  # prompts share lines with the output
    places = re.findall(r"^> (.+)\((\d+)\)(\w+)\(\)", text.split("@@TYPE")[0], flags=re.MULTILINE)
    if places:
        where, at, name = places[-1]
        facts["reached_user_frame"] = _is_user_file(where) and int(at) == line
        facts["reached_forward"] = _runs(name, function)
        facts["forward_file"] = os.path.basename(where) if _runs(name, function) else None
    typed = re.search(r"\('@@TYPE', '([^']+)'\)\n(.*)", text)
    if typed and not typed.group(2).startswith("***"):
        facts.update(read_local=True, local_type=typed.group(1), local_repr=typed.group(2)[:120])
    elif "***" in text:
        facts["reason"] = next(ln for ln in text.splitlines() if "***" in ln)[:MESSAGE_CHARS]
    return facts


def ir_op_counts(text: str) -> dict[str, int]:
    """Operation -> count in compiler IR text: StableHLO/MHLO (`= stablehlo.add`) or XLA HLO."""
    if re.search(r"=\s*(stablehlo|mhlo|chlo)\.", text):
        names = re.findall(r"=\s*(?:stablehlo|mhlo|chlo)\.(\w+)", text)
    else:  # HLO: `  add.3 = f32[] add(f32[] x, f32[] y)`
        names = re.findall(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*\S+\s+([a-z][\w\-]*)\(", text, flags=re.M)
    return dict(Counter(names).most_common())


def nan_facts(error: BaseException | None, line: int, extra_text: str) -> dict[str, Any]:
    """Did the NaN tool stop, at the log op, naming the user's line?"""
    if error is None:
        return {"stopped": False, "mentions_nan": False, "names_log_op": False,
                "names_user_line": False, "exception": None, "message": None}
    facts = traceback_facts(error, line, extra_text)
    text = "\n".join(str(e) for e in _chain(error)) + "\n" + extra_text
    return {
        "stopped": True,
        "mentions_nan": re.search(r"(?i)\bnan\b|infinity", text) is not None,
        "names_log_op": re.search(r"\blog\b|\bLog\b|LogBackward", text) is not None,
        "names_user_line": facts["user_frame"] or facts["message_names_line"],
        "exception": facts["exception"],
        "message": facts["message"],
    }
