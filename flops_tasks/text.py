"""Text from outside (workers, containers, Oakestra, docker's stderr) made safe to print.

Every remote text reaches the terminal through ``visible``: control characters (ESC, BEL,
CR, C1 codes) and the bidi marks and overrides are written as ``\\xNN``/``\\uNNNN`` escapes,
so a hostile name cannot move the cursor, recolour the terminal or reorder what is shown.
``ui`` uses it for every table cell and line, ``errors.FlopsError`` for every one-line
error. Imports nothing: errors and the lowest layers may use it.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, and the bidi marks and overrides
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: object) -> str:
    """``text`` with every control character written as a ``\\xNN``/``\\uNNNN`` escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))
