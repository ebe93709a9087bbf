"""mgmae: motion-guided masking for video masked autoencoding (MGMAE, ICCV 2023).

The names below are imported on first use (``from mgmae import build_masker`` works as usual), so
``import mgmae`` and ``mgmae --help`` do not pay for torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Config": "mgmae.config",
    "load_config": "mgmae.config",
    "build_masker": "mgmae.masking",
    "register_masker": "mgmae.masking",
    "build_flow": "mgmae.flow",
    "register_flow": "mgmae.flow",
    "create_model": "mgmae.models",
    "list_models": "mgmae.models",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mgmae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_model(path, task=None, strict=True, trusted=None, **overrides):
    """Load our checkpoints, official VideoMAE/MGMAE ``.pth`` files or Hugging Face VideoMAE
    directories (see :func:`mgmae.convert.load_model`). Files are read safely (no pickled code
    runs); ``trusted=True`` lifts that for a file you trust."""
    from mgmae.convert import load_model as _load

    return _load(path, task=task, strict=strict, trusted=trusted, **overrides)


__all__ = ["Config", "load_config", "build_masker", "register_masker", "build_flow",
           "register_flow", "create_model", "list_models", "load_model", "__version__"]
