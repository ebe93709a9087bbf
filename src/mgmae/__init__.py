"""mgmae: motion-guided masking for video masked autoencoding (MGMAE, ICCV 2023)."""

__version__ = "0.1.0"

from mgmae.config import Config, load_config  # noqa: E402
from mgmae.masking import build_masker  # noqa: E402
from mgmae.models import create_model, list_models  # noqa: E402

__all__ = ["Config", "load_config", "build_masker", "create_model", "list_models", "__version__"]
