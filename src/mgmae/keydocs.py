"""What each config key means, for ``mgmae config --keys``: the comments written beside the
dataclass fields of :mod:`mgmae.config`, read from its source.

A field's words are the comment lines right above it (a block that describes it) followed by the
comment on its own line(s)::

    # target = per-patch normalized pixels (true: the paper's setting ...)
    norm_pix_loss: bool = False

    epochs: int = 20  # passes over the training videos

So the comments stay the one place a key is described; tests/test_front_door.py checks that every
key has words. Reading the source costs a few milliseconds and imports nothing heavy.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import tokenize
from pathlib import Path

import yaml

__all__ = ["key_docs", "format_keys"]


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """``line -> (comment text, whether the line holds nothing but the comment)``."""
    out: dict[int, tuple[str, bool]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            out[tok.start[0]] = (text, not tok.line[:tok.start[1]].strip())
    return out


def key_docs() -> dict[str, str]:
    """``{"section.field": words}`` for every key of :class:`mgmae.config.Config` (empty words
    for a field without a comment)."""
    from mgmae import config

    source = Path(config.__file__).read_text(encoding="utf-8")
    comments = _comments(source)
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    out: dict[str, str] = {}
    for section in dataclasses.fields(config.Config):
        cls = section.default_factory  # type: ignore[misc]
        node = classes[cls.__name__]
        for field in node.body:
            if not (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)):
                continue
            above = []
            line = field.lineno - 1
            while line in comments and comments[line][1]:  # the block of comment lines above
                above.insert(0, comments[line][0])
                line -= 1
            beside = [comments[n][0] for n in range(field.lineno, field.end_lineno + 1)
                      if n in comments and not comments[n][1]]
            words = [" ".join(t for t in part if t) for part in (above, beside)]
            out[f"{section.name}.{field.target.id}"] = "; ".join(w for w in words if w)
    return out


def _default(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[:-len("\n...")].strip() if text.endswith("...") else text


def format_keys(cfg=None) -> str:
    """One line per key: ``key  value  words`` (aligned; ``mgmae config --keys | grep flow``); the
    values are ``cfg``'s (``mgmae config -c RECIPE --keys``), by default the defaults."""
    from mgmae.config import Config, flatten

    defaults = flatten((cfg or Config()).to_dict())
    docs = key_docs()
    rows = [(k, _default(defaults[k]), docs.get(k, "")) for k in sorted(defaults)]
    kw = max(len(k) for k, _, _ in rows)
    dw = min(max(len(d) for _, d, _ in rows), 24)
    return "\n".join(f"{k:<{kw}}  {d:<{dw}}  {w}".rstrip() for k, d, w in rows)
