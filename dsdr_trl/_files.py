"""File modes of what a DSDR run saves."""

from __future__ import annotations

import os
from pathlib import Path


def follow_umask(directory: str | os.PathLike) -> None:
    """Gives the `*.safetensors` files in `directory` that only their owner may read the mode any new file gets
    (0o666 less the umask), like the config and tokenizer files saved next to them.

    safetensors 0.8 writes through a temporary file, created 0o600, that it renames into place (safetensors#782), so
    weights saved by `save_pretrained` are readable by their owner only.
    """
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    for path in Path(directory).glob("*.safetensors"):
        if path.stat().st_mode & 0o777 == 0o600:
            path.chmod(0o666 & ~umask)
