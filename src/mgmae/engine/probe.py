"""Frozen evaluation with a trained head: the attentive probe (``mgmae probe``).

An MAE's pooled features read poorly through a linear layer (docs/probe.md), so the attentive probe
reads the frozen encoder's whole token sequence: learnable query token(s) attend to all tokens
(``probe.depth - 1`` self-attention blocks over the tokens first), then LayerNorm and a linear
classifier (:class:`AttentiveProbe`; the head of V-JEPA's frozen evaluation). The encoder never
changes and stays in eval mode. Its tokens are computed once per view and kept in memory
(float16) when they fit ``probe.cache_gb``, else recomputed every epoch; the probe trains on the
same augmentation-free views as the linear probe and is scored on the validation videos with
``finetune.test_num_segment x test_num_crop`` views, softmax scores averaged (as ``mgmae eval``).
``probe.head=linear`` is ``mgmae linprobe``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mgmae.config import Config
from mgmae.data import build_loader, uses_synthetic
from mgmae.engine.evaluate import (EvalResult, average_views, build_eval_dataset, check_labels,
                                   check_unreadable, classification_metrics, video_paths,
                                   views_of, write_eval_outputs)
from mgmae.engine.distributed import cleanup, init_distributed
from mgmae.engine.loop import autocast_dtype
from mgmae.models.build import SCRATCH, build_encoder, classifier_name, is_scratch
from mgmae.models.vit import Block

__all__ = ["AttentiveProbe", "CrossAttentionBlock", "ProbeResult", "TokenSource", "Tokens", "probe",
           "score", "train_attentive"]


class CrossAttentionBlock(nn.Module):
    """Queries attend to the tokens (pre-norm), then an MLP on the queries; both residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(x)  # [B, N, D]
        q = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]  # [B, Q, D]
        return q + self.mlp(self.norm2(q))


class AttentiveProbe(nn.Module):
    """``(B, N, D)`` frozen tokens -> ``(B, num_classes)`` logits: ``depth - 1`` self-attention
    blocks over the tokens, ``num_queries`` learnable queries cross-attending to them, LayerNorm of
    the queries' mean, linear classifier."""

    def __init__(self, dim: int, num_classes: int, num_heads: int, depth: int = 1,
                 num_queries: int = 1, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"probe.num_heads={num_heads} does not divide the encoder's width {dim}")
        self.query = nn.Parameter(torch.zeros(1, num_queries, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth - 1))
        self.cross = CrossAttentionBlock(dim, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens
        for blk in self.blocks:
            x = blk(x)  # [B, N, D]
        q = self.cross(self.query.expand(len(x), -1, -1), x)  # [B, Q, D]
        return self.head(self.norm(q.mean(1)))  # [B, K]


# ----------------------------------------------------------------------------- frozen tokens
class TokenSource:
    """The frozen encoder's tokens of every view of ``dataset`` (rows: video-major, ``V`` views
    each), with the videos' labels. ``cached``: computed once, kept as float16 on the CPU;
    otherwise each :meth:`batches` pass runs the encoder again (same views: they are
    augmentation-free). Unreadable videos have no rows (:attr:`unreadable`; more than
    ``data.max_fail_frac`` of them is an error)."""

    def __init__(self, encoder: nn.Module, dataset, cfg: Config, device, dtype=None,
                 progress: bool = True, desc: str = "tokens", info=None):
        self.encoder, self.dataset, self.cfg = encoder, dataset, cfg
        self.info = info if info is not None and info.enabled else None  # torchrun: ranks share the videos
        self.device, self.dtype, self.progress, self.desc = torch.device(device), dtype, progress, desc
        self.V = views_of(dataset)
        self.num_tokens, self.dim = encoder.num_patches, encoder.embed_dim
        self.bytes = len(dataset) * self.V * self.num_tokens * self.dim * 2  # float16
        self.cached = self.bytes <= cfg.probe.cache_gb * 2**30
        if self.info is not None and not self.cached:
            raise ValueError(f"under torchrun the probe shares the token computation among the ranks and "
                             f"needs the tokens cached: they take {self.bytes / 2**30:.1f} GiB, more than "
                             f"probe.cache_gb={cfg.probe.cache_gb:g}; raise it, or run one process")
        self.tokens: torch.Tensor | None = None
        self.labels, self.unreadable = self._scan()

    def _loader(self, batch_videos: int, shuffle: bool = False, seed: int = 0):
        return build_loader(self.dataset, batch_videos, num_workers=self.cfg.train.num_workers,
                            shuffle=shuffle, drop_last=False, seed=seed,
                            pin_memory=self.device.type == "cuda")

    @torch.no_grad()
    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        self.encoder.eval()
        with torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext():
            return self.encoder.forward_features(video.to(self.device, non_blocking=True))  # [b, N, D]

    def _scan(self) -> tuple[np.ndarray, list[str]]:
        """One pass: the labels, the unreadable videos, and (cached) the tokens. Under torchrun
        rank ``r`` encodes videos ``r, r + world, ...`` and every rank gets all of them."""
        bs = max(1, 2 * self.cfg.probe.batch_size // self.V)
        n = len(self.dataset)
        part = (torch.utils.data.Subset(self.dataset, range(self.info.rank, n, self.info.world_size))
                if self.info is not None else self.dataset)
        loader = build_loader(part, bs, num_workers=self.cfg.train.num_workers, shuffle=False,
                              drop_last=False, pin_memory=self.device.type == "cuda")
        tokens, labels, indices = [], [], []
        for batch in tqdm(loader, desc=self.desc, unit="batch", leave=False,
                          dynamic_ncols=True, disable=not self.progress):
            if hasattr(self.dataset, "update_failures"):
                self.dataset.update_failures(batch)
            if self.cached:
                tokens.append(self._encode(batch["video"]).to("cpu", torch.float16))
            labels.append(torch.as_tensor(batch["label"])[::self.V])
            indices.append(torch.as_tensor(batch["index"])[::self.V])
        labels_, idx = torch.cat(labels).numpy().astype(np.int64), torch.cat(indices).numpy()
        if self.info is not None:  # every rank: all videos, in dataset order (rank r: rows r::world)
            parts = [None] * self.info.world_size
            torch.distributed.all_gather_object(parts, (tokens, labels_, idx))
            world = self.info.world_size
            labels_, idx = np.zeros(n, np.int64), np.zeros(n, np.int64)
            rows: list = [None] * n
            for r, (tok_r, lab_r, idx_r) in enumerate(parts):
                labels_[r::world], idx[r::world] = lab_r, idx_r
                flat = torch.cat(tok_r) if tok_r else torch.zeros(0)
                for j in range(len(lab_r)):
                    rows[r + j * world] = flat[j * self.V:(j + 1) * self.V]
            tokens = [torch.cat(rows)] if n else []
        self.keep = idx == np.arange(len(idx))  # row r is video r unless the dataset replaced it
        unreadable = [p for p, k in zip(video_paths(self.dataset), self.keep) if not k]
        check_unreadable(unreadable, len(idx), self.cfg.data.max_fail_frac,
                         getattr(self.dataset, "failures", {}), f"so no probe is trained or scored ({self.desc})")
        if self.cached:
            t = torch.cat(tokens).view(len(idx), self.V, self.num_tokens, self.dim)
            self.tokens = t[torch.from_numpy(self.keep)]  # [n, V, N, D]
        return labels_[self.keep], unreadable

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """``(tokens (b * V, N, D) float, labels (b,))`` over the readable videos, shuffled with
        ``generator`` (None: in order)."""
        if self.cached:
            yield from Tokens(self.tokens, self.labels, device=self.device).batches(batch_size, generator)
            return
        seed = int(torch.randint(0, 2**31, (1,), generator=generator)) if generator is not None else 0
        readable = torch.utils.data.Subset(self.dataset, np.flatnonzero(self.keep).tolist())
        loader = build_loader(readable, batch_size, num_workers=self.cfg.train.num_workers,
                              shuffle=generator is not None, drop_last=False, seed=seed,
                              pin_memory=self.device.type == "cuda")
        for batch in loader:  # (only readable videos are asked for: no replacement stands in)
            tok = self._encode(batch["video"]).float()  # [b * V, N, D]
            yield tok, torch.as_tensor(batch["label"])[::self.V]


# ----------------------------------------------------------------------------- training
class Tokens:
    """Tokens already in memory (``(n, N, D)``, one view per video, or ``(n, V, N, D)``) with their
    labels: the source :func:`train_attentive` and :func:`score` read when the clips were encoded
    elsewhere (the study encodes its rendered clips once for every label kind), and the cache of
    :class:`TokenSource`."""

    def __init__(self, tokens: torch.Tensor, labels: np.ndarray, num_heads: int | None = None,
                 device: str | torch.device = "cpu"):
        self.tokens = tokens if tokens.ndim == 4 else tokens[:, None]  # [n, V, N, D]
        self.labels, self.V = np.asarray(labels, dtype=np.int64), self.tokens.shape[1]
        self.dim, self.device = tokens.shape[-1], torch.device(device)
        self.encoder = type("Encoder", (), {"num_heads": num_heads or max(1, self.dim // 64)})()

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        n = len(self)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        for i in range(0, n, batch_size):
            sel = order[i:i + batch_size]
            yield (self.tokens[sel].flatten(0, 1).to(self.device, torch.float32),  # [b * V, N, D]
                   torch.from_numpy(self.labels[sel.numpy()]))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name == "query" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_attentive(train: TokenSource, num_classes: int, cfg: Config, *, seed: int = 0,
                    log=None, progress: bool = True) -> tuple[AttentiveProbe, list[dict]]:
    """Train an :class:`AttentiveProbe` on ``train``'s tokens; returns it (eval mode) and the
    per-epoch history. A non-finite loss stops it (``FloatingPointError``): no result."""
    p = cfg.probe
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    heads = p.num_heads or getattr(train.encoder, "num_heads", 1)
    model = AttentiveProbe(train.dim, num_classes, heads, p.depth, p.num_queries, p.mlp_ratio)
    model.to(train.device)
    opt = torch.optim.AdamW(_param_groups(model, p.weight_decay), lr=p.lr)
    steps_per_epoch = math.ceil(len(train) / p.batch_size)
    total, warmup = p.epochs * steps_per_epoch, int(p.warmup_epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)
    history, step = [], 0
    bar = tqdm(total=total, desc="probe", unit="step", dynamic_ncols=True, disable=not progress)
    for epoch in range(p.epochs):
        model.train()
        running, seen = 0.0, 0
        for tokens, labels in train.batches(p.batch_size, g):
            lr = (p.lr * (step + 1) / warmup if step < warmup else
                  0.5 * p.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))
            for group in opt.param_groups:
                group["lr"] = lr
            labels = labels.to(train.device).repeat_interleave(train.V)  # each view its label
            loss = loss_fn(model(tokens), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the probe diverged: loss {loss.item()} at epoch {epoch + 1}, "
                                         f"step {step + 1}; lower probe.lr (now {p.lr:g})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(labels)
            seen += len(labels)
            step += 1
            bar.update(1)
        rec = {"epoch": epoch + 1, "loss": round(running / max(seen, 1), 6), "lr": lr}
        bar.set_postfix(loss=f"{rec['loss']:.4f}")
        history.append(rec)
        if log is not None:
            log(rec)
    bar.close()
    model.eval()
    return model, history


@torch.no_grad()
def score(model: AttentiveProbe, source: TokenSource) -> np.ndarray:
    """Softmax scores ``(n, K)`` of ``source``'s readable videos, averaged over their views."""
    model.eval()
    out = []
    for tokens, _ in source.batches(max(1, 64 // source.V)):
        out.append(average_views(model(tokens), source.V).cpu())  # [b, K]
    scores = torch.cat(out).numpy()
    if not np.isfinite(scores).all():
        raise FloatingPointError("the probe's scores are NaN or inf: there is no accuracy to report")
    return scores


# ----------------------------------------------------------------------------- the job
@dataclass
class ProbeResult:
    run_dir: str
    pretrained: str
    head: str
    seed: int
    train_acc1: float
    val_acc1: float | None
    val_acc5: float | None
    num_train: int
    num_val: int
    seconds: float
    token_seconds: float  # computing (and caching) the frozen tokens
    train_seconds: float  # training the head
    cached: bool
    files: dict[str, str] = field(default_factory=dict)
    unreadable_train: list[str] = field(default_factory=list)
    unreadable_val: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(cfg: Config, pretrained: str | Path | None, *, progress: bool = True) -> ProbeResult:
    """The probe ``cfg.probe.head`` of ``pretrained``'s frozen encoder (or ``"scratch"``: random
    weights, the baseline) on ``cfg``'s data: trained on the train split, scored on the val split.
    Writes ``config.yaml``, ``log.jsonl``, ``probe.pth``, ``result.json`` and ``val/`` (metrics,
    predictions, confusion matrix) in ``train.output_dir/train.run_name``."""
    if cfg.probe.head == "linear":
        from mgmae.engine.linprobe import linprobe

        r = linprobe(cfg, pretrained, progress=progress)
        return ProbeResult(r.run_dir, r.pretrained, "linear", cfg.train.seed, r.train_acc1, r.val_acc1,
                           r.val_acc5, r.num_train, r.num_val, r.seconds, r.feature_seconds,
                           r.seconds - r.feature_seconds, True, r.files, r.unreadable_train,
                           r.unreadable_val)
    info, device = init_distributed(cfg.train.device)
    try:
        return _probe(cfg, pretrained, progress, info, device)
    finally:
        cleanup()


def _probe(cfg: Config, pretrained, progress: bool, info, device) -> ProbeResult | None:
    t0 = time.time()
    cfg = copy.deepcopy(cfg)
    f, t = cfg.finetune, cfg.train
    main = info is None or info.is_main
    progress = progress and main
    torch.manual_seed(t.seed)
    synth = uses_synthetic(cfg)
    train_set, names, train_src = build_eval_dataset(cfg, "train", views=(1, 1), synthetic=synth)
    K = f.num_classes or (len(names) if names else getattr(train_set, "num_classes", 0))
    if K < 1:
        raise ValueError(f"no classes: the training labels are all -1 ({train_src})")
    check_labels(train_set, K, train_src if isinstance(train_src, str) else None, what="the training data")
    val_set = val_src = None
    views = (f.test_num_segment, f.test_num_crop) if cfg.probe.test_views else (1, 1)
    try:
        val_set, _, val_src = build_eval_dataset(cfg, "val", views=views, synthetic=synth)
    except ValueError as e:
        print(f"[mgmae] no validation data ({e}); reporting training accuracy only")
    if val_set is not None:
        check_labels(val_set, K, val_src if isinstance(val_src, str) else None, allow_unlabelled=True,
                     what="the training data")
    encoder = build_encoder(pretrained, cfg).to(device).eval()
    for prm in encoder.parameters():
        prm.requires_grad_(False)
    dtype = autocast_dtype(t.amp, device)
    src = SCRATCH if is_scratch(pretrained) else Path(str(pretrained)).stem
    cfg.train.run_name = t.run_name or (f"probe-{classifier_name(cfg)}-{src}-"
                                        f"{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if info.enabled:  # every rank must write to rank 0's run directory
        box = [cfg.train.run_name]
        torch.distributed.broadcast_object_list(box, src=0)
        cfg.train.run_name = box[0]
    run_dir = Path(t.output_dir) / cfg.train.run_name

    t_tok = time.time()
    train_src_tokens = TokenSource(encoder, train_set, cfg, device, dtype, progress, "train tokens", info)
    val_tokens = (TokenSource(encoder, val_set, cfg, device, dtype, progress, "val tokens", info)
                  if val_set is not None else None)
    t_tok = time.time() - t_tok
    if not main:  # the tokens are shared; rank 0 trains the (small) head and writes the result
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    keep = train_src_tokens.labels >= 0
    if not keep.all():
        raise ValueError(f"the training data has {int((~keep).sum())} unlabelled videos (label -1): "
                         f"a probe needs labels ({train_src})")
    tr = train_src_tokens
    gib = (tr.bytes + (val_tokens.bytes if val_tokens is not None else 0)) / 2**30
    val_views = f" ({val_tokens.V} views each)" if val_tokens is not None else ""
    print(f"[mgmae] attentive probe of {pretrained or SCRATCH} on {train_src} ({len(train_set)} videos, "
          f"{tr.num_tokens} tokens x {tr.dim} each), val {val_src or 'none'}{val_views}; tokens "
          f"{'cached' if tr.cached else 'recomputed each epoch'} ({gib:.3f} GiB as float16, "
          f"probe.cache_gb={cfg.probe.cache_gb:g}); device {device}; run dir {run_dir}")
    t_train = time.time()
    log_path = run_dir / "log.jsonl"
    with log_path.open("w") as fh:
        head, history = train_attentive(train_src_tokens, K, cfg, seed=t.seed,
                                        log=lambda r: (fh.write(json.dumps(r) + "\n"), fh.flush()),
                                        progress=progress)
        train_m = classification_metrics(score(head, train_src_tokens), train_src_tokens.labels, K)
        t_train = time.time() - t_train
        files = {"config": str(run_dir / "config.yaml"), "log": str(log_path)}
        val_m = None
        if val_tokens is not None:
            scores = score(head, val_tokens)
            val_m = classification_metrics(scores, val_tokens.labels, K)
            val_m.update(num_views=val_tokens.V, num_unreadable=len(val_tokens.unreadable),
                         unreadable=val_tokens.unreadable)
            readable = np.flatnonzero(val_tokens.keep)
            files.update(write_eval_outputs(run_dir / "val", EvalResult(val_m, scores, val_tokens.labels,
                                                                        readable), val_set, names))
        fh.write(json.dumps({"summary": {"train_acc1": train_m["top1"],
                                         "val_acc1": val_m["top1"] if val_m else None}}) + "\n")
    torch.save({"probe": head.state_dict(), "head": "attentive", "dim": train_src_tokens.dim,
                "num_classes": K, "probe_config": asdict(cfg.probe), "pretrained": str(pretrained or SCRATCH),
                "class_names": names}, run_dir / "probe.pth")
    files["probe"] = str(run_dir / "probe.pth")
    res = ProbeResult(str(run_dir), str(pretrained or SCRATCH), "attentive", t.seed, train_m["top1"],
                      val_m["top1"] if val_m else None, val_m["top5"] if val_m else None,
                      len(train_src_tokens), len(val_tokens) if val_tokens is not None else 0,
                      round(time.time() - t0, 1), round(t_tok, 1), round(t_train, 1),
                      train_src_tokens.cached, files, train_src_tokens.unreadable,
                      val_tokens.unreadable if val_tokens is not None else [])
    (run_dir / "result.json").write_text(json.dumps(res.to_dict(), indent=1) + "\n")
    files["result"] = str(run_dir / "result.json")
    print(f"[mgmae] {format_result(res)}")
    return res


def format_result(r: ProbeResult) -> str:
    val = (f"val top-1 {r.val_acc1:.2f}%, top-5 {r.val_acc5:.2f}%" if r.val_acc1 is not None
           else "no validation data")
    bad = "".join(f", {len(v)} {k} videos unreadable, left out" for k, v in
                  (("train", r.unreadable_train), ("val", r.unreadable_val)) if v)
    return (f"{r.head} probe: {val}; train top-1 {r.train_acc1:.2f}% ({r.num_train} train videos{bad}; "
            f"tokens {r.token_seconds:.0f} s, head {r.train_seconds:.0f} s, total {r.seconds:.0f} s)")


# ----------------------------------------------------------------------------- CLI
def build_parser():
    import argparse

    from mgmae.commands import add_common_flags

    p = argparse.ArgumentParser(
        prog="mgmae probe",
        description="Frozen evaluation: an attentive (or linear) head trained on a frozen encoder's "
                    "tokens. No config: the built-in synthetic data (motion labels).")
    p.add_argument("args", nargs="*", metavar="PRETRAINED [key=value ...]",
                   help="checkpoint (ours, official .pth, HF directory) or 'scratch', then overrides")
    p.add_argument("-c", "--config", help="YAML recipe (data settings, probe.*)")
    p.add_argument("--head", help="attentive | linear: alias of probe.head")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="repeat for N seeds (train.seed, +1, ...), mean and spread")
    p.add_argument("--compare-scratch", action="store_true",
                   help="also probe a random encoder of the same architecture, same seeds; paired t-test")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_common_flags(p)
    return p


def cli_main(argv: list[str]) -> int:
    from mgmae.commands import check_keys_apply, command, show_progress, split_positionals
    from mgmae.config import load_config

    @command("probe")
    def run(argv: list[str]) -> int:
        parser = build_parser()
        args = parser.parse_intermixed_args(argv)
        pos, overrides = split_positionals(args.args, 1)
        check_keys_apply("probe", overrides)
        if not pos:
            parser.error("give the checkpoint whose encoder to probe (or 'scratch')")
        if args.head:
            overrides = [*overrides, f"probe.head={args.head}"]
        cfg = load_config(args.config, overrides)
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        if args.compare_scratch and is_scratch(pos[0]):
            parser.error("--compare-scratch needs a pre-trained checkpoint")
        if args.seeds == 1 and not args.compare_scratch:
            probe(cfg, pos[0], progress=show_progress(args.quiet))
            return 0
        from mgmae.experiments.compare import compare_probes

        out = compare_probes(cfg, pos[0], seeds=args.seeds, scratch=args.compare_scratch,
                             progress=show_progress(args.quiet))
        if out["summary"]:
            print(out["table"])
            print(f"[mgmae] numbers written to {out['summary']}")
        return 0

    return run(argv)
