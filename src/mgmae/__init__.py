"""mgmae: motion-guided masking for video masked autoencoding (MGMAE, ICCV 2023)."""

__version__ = "0.1.0"

from mgmae.config import Config, load_config  # noqa: E402
from mgmae.masking import build_masker  # noqa: E402
from mgmae.models import create_model, list_models  # noqa: E402


def load_model(path, task=None, strict=True, trusted=None, **overrides):
    """Load our checkpoints, official VideoMAE/MGMAE ``.pth`` files or Hugging Face VideoMAE
    directories (see :func:`mgmae.convert.load_model`). Files are read safely (no pickled code
    runs); ``trusted=True`` lifts that for a file you trust."""
    from mgmae.convert import load_model as _load

    return _load(path, task=task, strict=strict, trusted=trusted, **overrides)


def build_flow(name_or_callable, **options):
    """Optical-flow estimator ``f(src, dst) -> (N, 2, H, W)`` (see :func:`mgmae.flow.build_flow`)."""
    from mgmae.flow import build_flow as _build

    return _build(name_or_callable, **options)


__all__ = ["Config", "load_config", "build_masker", "build_flow", "create_model", "list_models",
           "load_model", "__version__"]
