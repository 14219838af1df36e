"""Write small text outputs atomically: a temporary file beside the target, then rename."""

from __future__ import annotations

import os
from pathlib import Path


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    target = Path(path)
    if target.exists() and not target.is_file():
        # /dev/null, /dev/stdout, a fifo: renaming over them would replace the device.
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # a rename must never expose an empty file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
