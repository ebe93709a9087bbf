"""Where weights come from: a local path, ``hf-hub:ORG/NAME[/PATH][@REV]``, an ``http(s)://`` URL,
or a short name of the packaged table (:data:`mgmae.weights_table.WEIGHTS`, ``mgmae weights``).

:func:`resolve` turns any of them into a local path that :func:`mgmae.convert.load_model` reads
as it reads every file (weights only, :mod:`mgmae.serialization`):

* ``hf-hub:``: through ``huggingface_hub`` (imported only then), so its cache, ``HF_HOME``,
  ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and tokens work as they do for transformers. A repository
  gives its VideoMAE directory (``config.json`` + the weights, nothing else downloaded); a path in
  it (``hf-hub:OpenGVLab/VideoMAE2/distill/vit_b_k710_dl_from_giant.pth``) gives that file, a
  folder in it (no suffix) that folder.
* URLs: downloaded once into :func:`cache_dir` (``MGMAE_HOME``, else
  ``$XDG_CACHE_HOME/mgmae``, else ``~/.cache/mgmae``) under ``downloads/<hash of the URL>/NAME``.
  The bytes go to ``NAME.part`` in the same folder and are renamed into place only when complete
  (and, with a ``#sha256=HEX`` fragment, checked): the final name never holds a partial file. A
  server that accepts ranges gets a ``Range`` request for what a ``.part`` already holds; from one
  that does not, a failed download leaves nothing.
* names: an entry of the table; one hosted where only a browser can download (Google Drive)
  is looked for under ``cache_dir()/weights/FILE``, and the error says where to get it.

Every failure is a one-line ``ValueError`` / ``OSError`` (``mgmae <cmd>: error: ...``, exit 2).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mgmae.errors import MgmaeError

__all__ = ["HUB_PREFIX", "cache_dir", "download", "find_weights", "is_reference", "resolve"]

HUB_PREFIX = "hf-hub:"
CHUNK = 1 << 20
TIMEOUT = 60.0  # seconds without a byte before a download is given up
# the files of a transformers VideoMAE directory that load_model reads, in the order tried
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
               "pytorch_model.bin.index.json")


class DownloadError(OSError):
    """A download that failed; nothing of it is left under the final name."""

    def __str__(self) -> str:  # one line, without errno decorations
        return str(self.args[0]) if self.args else "download failed"


def cache_dir() -> Path:
    """mgmae's cache: ``MGMAE_HOME``, else ``$XDG_CACHE_HOME/mgmae``, else ``~/.cache/mgmae``."""
    if os.environ.get("MGMAE_HOME"):
        return Path(os.environ["MGMAE_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mgmae"


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def is_reference(source: Any) -> bool:
    """Whether ``source`` is something :func:`resolve` must turn into a path (a hub id, a URL, or
    a word that is not an existing file but is, or could be, a name of the table)."""
    if not isinstance(source, str):
        return False
    if source.startswith(HUB_PREFIX) or _is_url(source):
        return True
    return _could_be_name(source) and not os.path.exists(source)


def _could_be_name(s: str) -> bool:
    return bool(s) and "/" not in s and os.sep not in s and not s.endswith(
        (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".json"))


def resolve(source: str | os.PathLike, *, progress: bool | None = None) -> Path:
    """The local path of ``source``: a path as it is; a hub id, URL or name downloaded (or found
    in the cache). ``progress``: draw a download bar (default: on a terminal only)."""
    if not isinstance(source, str):
        return Path(source)
    if source.startswith(HUB_PREFIX):
        return hub_path(source)
    if _is_url(source):
        return download(source, progress=progress)
    if _could_be_name(source) and not os.path.exists(source):
        return find_weights(source, progress=progress)
    return Path(source)


# --------------------------------------------------------------------------- Hugging Face hub
def parse_hub(ref: str) -> tuple[str, str | None, str | None]:
    """``hf-hub:ORG/NAME[/PATH][@REV]`` -> (repo id, path in the repo or None, revision or None)."""
    body = ref[len(HUB_PREFIX):] if ref.startswith(HUB_PREFIX) else ref
    body, _, revision = body.partition("@")
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"{ref}: a hub id is hf-hub:ORG/NAME[/PATH/IN/REPO][@REVISION]")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None, revision or None


class MissingDependency(MgmaeError, ImportError):
    """An optional package that this kind of source needs is not installed (one line, exit 2)."""


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise MissingDependency("hf-hub: ids need the huggingface_hub package "
                          "(pip install huggingface_hub, or pip install 'mgmae[hf]')") from None
    return huggingface_hub


def _hub_error(ref: str, e: Exception, what: str) -> Exception:
    """One line for what huggingface_hub raised while fetching ``what`` of ``ref``."""
    from huggingface_hub import errors

    offline = _offline()
    if isinstance(e, errors.GatedRepoError):
        return PermissionError(f"{ref}: the repository is gated: accept its conditions on the hub "
                               f"and log in (`hf auth login`) or set HF_TOKEN")
    if isinstance(e, errors.RepositoryNotFoundError):
        return FileNotFoundError(f"{ref}: no such repository on the hub (or it is private: log in "
                                 f"with `hf auth login` or set HF_TOKEN)")
    if isinstance(e, errors.RevisionNotFoundError):
        return FileNotFoundError(f"{ref}: no such revision in the repository")
    if isinstance(e, errors.LocalEntryNotFoundError) or offline:  # (an EntryNotFoundError too)
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        return FileNotFoundError(f"{ref}: {what} is not in the Hugging Face cache and {why} "
                                 f"(download it once online, or pass a local path)")
    if isinstance(e, errors.EntryNotFoundError):
        return FileNotFoundError(f"{ref}: the repository has no file {what}")
    msg = " ".join(str(e).split())[:300]
    return OSError(f"{ref}: cannot fetch {what} from the hub: {msg}")


def _hub_file(hub, ref: str, repo: str, filename: str, revision: str | None) -> Path:
    try:
        return Path(hub.hf_hub_download(repo, filename, revision=revision))
    except Exception as e:  # noqa: BLE001 - every hub error becomes one line
        raise _hub_error(ref, e, filename) from None


def hub_path(ref: str) -> Path:
    """The local path of a hub id: a file, or a directory holding ``config.json`` + weights."""
    repo, path, revision = parse_hub(ref)
    hub = _hub()
    if path and Path(path).suffix:  # one file of the repository
        return _hub_file(hub, ref, repo, path, revision)
    prefix = f"{path}/" if path else ""
    config = _hub_file(hub, ref, repo, prefix + "config.json", revision)
    errors = getattr(hub, "errors", None)
    missing = (errors.EntryNotFoundError, errors.LocalEntryNotFoundError) if errors else (Exception,)
    for name in _HF_WEIGHTS:
        try:
            got = Path(hub.hf_hub_download(repo, prefix + name, revision=revision))
        except missing:
            continue
        except Exception as e:  # noqa: BLE001
            raise _hub_error(ref, e, prefix + name) from None
        if name.endswith(".index.json"):  # the shards it names
            import json

            for shard in sorted(set(json.loads(got.read_text())["weight_map"].values())):
                _hub_file(hub, ref, repo, prefix + shard, revision)
        return config.parent
    raise FileNotFoundError(f"{ref}: config.json but none of {', '.join(_HF_WEIGHTS)} "
                            f"(in the cache{'' if _offline() else ' or on the hub'}); to load one "
                            f"file of the repository, name it: hf-hub:{repo}/PATH/IN/REPO")


def _offline() -> bool:
    """huggingface_hub's offline switch (``HF_HUB_OFFLINE``, read when it was imported)."""
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")


# --------------------------------------------------------------------------- URLs
def _split_url(url: str) -> tuple[str, str | None]:
    """URL without its fragment, and the sha256 the fragment names (or None)."""
    base, _, frag = url.partition("#")
    sha = None
    if frag:
        m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", frag)
        if not m:
            raise ValueError(f"{url}: the only fragment understood is #sha256=<64 hex digits>")
        sha = m[1].lower()
    return base, sha


def url_cache_path(url: str) -> Path:
    """Where the file of ``url`` (fragment aside) lives in the cache."""
    base, _ = _split_url(url)
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(base).path)) or "download"
    name = re.sub(r"[^\w.+-]", "_", name)
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    return cache_dir() / "downloads" / key / name


def _looks_html(head: bytes) -> bool:
    start = head.lstrip()[:64].lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<meta"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def download(url: str, *, progress: bool | None = None, dest: Path | None = None) -> Path:
    """Download ``url`` into the cache once (see the module's text) and return the file."""
    base, sha = _split_url(url)  # a bad fragment is said before anything is created
    final = dest or url_cache_path(url)
    if final.is_file() and sha is None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _lock(final):  # one writer per file (the ranks of a distributed run wait for it)
        if not final.is_file():
            _download(url, final, progress)
        elif sha is not None:  # downloaded before, perhaps without a hash: check it now
            got = _known_sha256(final)
            if got != sha:
                _remove(final, _sha_file(final))
                raise ValueError(f"{base}: sha256 mismatch: expected {sha}, got {got} (the copy "
                                 f"in the cache); it was removed")
        return final


def _sha_file(final: Path) -> Path:
    return final.with_name(final.name + ".sha256")


def _known_sha256(final: Path) -> str:
    """The sha256 of a cached file: from its ``NAME.sha256`` note, else computed (and noted)."""
    note = _sha_file(final)
    try:
        text = note.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{64}", text) and note.stat().st_mtime >= final.stat().st_mtime:
            return text
    except OSError:
        pass
    got = _sha256(final)
    try:
        note.write_text(got + "\n")
    except OSError:
        pass
    return got


@contextlib.contextmanager
def _lock(final: Path):
    """An exclusive lock on ``NAME.lock`` next to ``final`` (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(final.with_name(final.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _download(url: str, final: Path, progress: bool | None) -> Path:
    import http.client

    base, sha = _split_url(url)
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(base, headers={"User-Agent": "mgmae"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    resumable = False
    try:
        try:
            resp = urllib.request.urlopen(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the range is past the end: start again
                _remove(part)
                return _download(url, final, progress)
            raise DownloadError(f"cannot download {base}: HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise DownloadError(f"cannot download {base}: {e.reason} (no network? a local path, or "
                                f"a file downloaded before, needs none)") from None
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            resumable = resp.headers.get("Accept-Ranges", "").lower() == "bytes" or resp.status == 206
            if resp.status != 206:
                have = 0  # the server sends the whole file
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None and length.isdigit() else None
            first = resp.read(min(CHUNK, 4096))
            if "text/html" in ctype.lower() or (have == 0 and _looks_html(first)):
                resumable = False
                raise DownloadError(
                    f"{base} served an HTML page, not a weights file (a sign-in, quota or 'download "
                    f"anyway' page, as Google Drive serves): download it in a browser and pass the "
                    f"file's path")
            bar = _bar(progress, total, have, final.name)
            try:
                with open(part, "ab" if have else "wb") as f:
                    chunk = first
                    while chunk:
                        f.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                        chunk = resp.read(CHUNK)
            finally:
                if bar is not None:
                    bar.close()
        size = part.stat().st_size
        if total is not None and size != total:
            raise _broken(base, f"the connection ended after {size} of {total} bytes", resumable)
    except (http.client.HTTPException, TimeoutError, ConnectionError) as e:
        size = part.stat().st_size if part.is_file() else 0
        if not resumable:
            _remove(part)
        raise _broken(base, f"the transfer broke off after {size} bytes ({type(e).__name__})",
                      resumable) from None
    except BaseException as e:  # ours, KeyboardInterrupt: nothing half-written under the name
        # the partial bytes stay (to resume) only when the server takes ranges
        if not (resumable and (getattr(e, "partial", False) or isinstance(e, KeyboardInterrupt))):
            _remove(part)
        raise
    got = _sha256(part)
    if sha is not None and got != sha:
        _remove(part)
        raise ValueError(f"{base}: sha256 mismatch: expected {sha}, got {got}; the file was "
                         f"not kept")
    os.replace(part, final)
    _sha_file(final).write_text(got + "\n")  # so a later #sha256= needs no second reading
    return final


def _broken(base: str, what: str, resumable: bool) -> DownloadError:
    e = DownloadError(f"cannot download {base}: {what}; "
                      + ("run again to resume" if resumable else "nothing was kept"))
    e.partial = True
    return e


def _bar(progress: bool | None, total: int | None, initial: int, name: str):
    if progress is None:
        from mgmae.commands import show_progress

        progress = show_progress()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------- names
def _table() -> dict[str, dict[str, Any]]:
    from mgmae.weights_table import WEIGHTS

    return {w["name"]: w for w in WEIGHTS}


def manual_path(entry: dict[str, Any]) -> Path:
    """Where a file that must be downloaded by hand is put: ``cache_dir()/weights/FILE``."""
    return cache_dir() / "weights" / entry["file"]


def find_weights(name: str, *, progress: bool | None = None) -> Path:
    """The local path of the table's ``name`` (downloaded or found in the cache)."""
    table = _table()
    entry = table.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise FileNotFoundError(f"checkpoint not found: {name} (no such file, and not a name of the "
                                f"weights table{hint}; `mgmae weights` lists the names)")
    where = entry["where"]
    if where.startswith(HUB_PREFIX):
        return hub_path(where)
    if _is_url(where) and not entry.get("browser"):
        sha = entry.get("sha256")
        return download(where + (f"#sha256={sha}" if sha else ""), progress=progress)
    target = manual_path(entry)
    if target.is_file():
        sha = entry.get("sha256")
        if sha and _sha256(target) != sha:
            raise ValueError(f"{name}: {target} does not have the sha256 the table gives ({sha})")
        return target
    raise FileNotFoundError(f"{name} is hosted on {entry.get('browser') or 'a site'}, which needs "
                            f"a browser: download {entry['file']} from {where} and save it as "
                            f"{target}; then the name finds it")


def describe(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The fields ``mgmae weights NAME`` prints, in order (empty where unknown)."""
    top1 = entry.get("top1")
    return [("name", entry["name"]), ("model", entry.get("model", "")),
            ("pre-training", entry.get("pretrain", "")), ("task", entry.get("task", "")),
            ("top-1", f"{top1} ({entry.get('top1_source', '')})" if top1 else ""),
            ("where", entry["where"]),
            ("download", (f"by hand, in a browser ({entry['browser']}), to {manual_path(entry)}"
                          if entry.get("browser") else "automatic")),
            ("licence", entry.get("licence", "")), ("sha256", entry.get("sha256", ""))]


# --------------------------------------------------------------------------- CLI
def build_parser():
    import argparse

    from mgmae.commands import add_common_flags

    p = argparse.ArgumentParser(
        prog="mgmae weights",
        description="The published weights mgmae knows by name; any command that takes a "
                    "checkpoint takes a name, hf-hub:ORG/NAME[/PATH][@REV] or an http(s) URL.")
    p.add_argument("name", nargs="?", help="a name of the table (or, with --fetch, a hub id or URL)")
    p.add_argument("--fetch", action="store_true",
                   help="download NAME into the cache (or find it there) and print its path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common_flags(p, checkpoints=False)
    return p


def _cached(entry: dict[str, Any]) -> bool:
    where = entry["where"]
    if entry.get("browser"):
        return manual_path(entry).is_file()
    if _is_url(where):
        return url_cache_path(where).is_file()
    return False  # hub files: huggingface_hub's cache decides


def format_table() -> str:
    rows = [("name", "model", "pre-training", "task", "top-1", "download", "licence")]
    for e in _table().values():
        rows.append((e["name"], e.get("model", ""), e.get("pretrain", ""), e.get("task", ""),
                     e.get("top1", ""), ("by hand: " + e["browser"]) if e.get("browser")
                     else e["where"], e.get("licence", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"(`mgmae weights NAME` for one; files by hand go under {cache_dir() / 'weights'})")
    return "\n".join(lines)


def _cli(argv: list[str]) -> int:
    from mgmae.commands import show_progress

    args = build_parser().parse_intermixed_args(argv)
    if args.fetch:
        if not args.name:
            raise ValueError("--fetch needs a NAME, hf-hub:ORG/NAME or URL")
        print(resolve(args.name, progress=show_progress(args.quiet)))
        return 0
    if not args.name:
        print(format_table())
        return 0
    entry = _table().get(args.name)
    if entry is None:
        find_weights(args.name)  # raises with the closest names
    fields = describe(entry)
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        print(f"{k:<{width}}  {v}".rstrip())
    if entry.get("browser"):
        print(f"{'cached':<{width}}  {'yes' if _cached(entry) else 'no'}")
    return 0


def cli_main(argv: list[str]) -> int:
    from mgmae.commands import command

    return command("weights")(_cli)(argv)
