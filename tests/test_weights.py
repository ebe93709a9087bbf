"""Weights by URL, hub id or name (mgmae.weights): a loopback HTTP server and a Hugging Face cache
built in a temporary HF_HOME; nothing here touches the internet."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from mgmae import weights
from mgmae.convert import export_model, load_model
from mgmae.models import create_model

ROOT = Path(__file__).resolve().parents[1]
HF_REASON = "transformers is not installed (pip install 'mgmae[hf]'); HF hub tests skipped"
TINY = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=256, layer_norm_eps=1e-6)


# --------------------------------------------------------------------------- a loopback server
class Server:
    """http.server on 127.0.0.1 (port 0) serving ``files``: path -> dict(data, ranges, truncate,
    ctype, status, headers); ``seen``: (method, path, Range header) of each request."""

    def __init__(self):
        self.files: dict[str, dict] = {}
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body):
                path = self.path.split("?")[0]
                outer.seen.append((self.command, path, self.headers.get("Range")))
                f = outer.files.get(path)
                if f is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, data = f.get("status", 200), f.get("data", b"")
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                start = int(m[1]) if m and f.get("ranges") else 0
                self.send_response(206 if start else status)
                for k, v in f.get("headers", {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", f.get("ctype", "application/octet-stream"))
                if f.get("ranges"):
                    self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if body:
                    cut = f.pop("truncate", None)  # one broken transfer, then whole ones
                    self.wfile.write(data[start:cut] if cut is not None else data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    home = tmp_path / "mgmae-cache"
    monkeypatch.setenv("MGMAE_HOME", str(home))
    return home


def _nano_classifier():
    torch.manual_seed(0)
    return create_model("vit_nano_patch8", num_frames=4, img_size=16, num_classes=3).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Our .pth of a tiny classifier: its bytes and the model."""
    model = _nano_classifier()
    path = export_model(model, tmp_path_factory.mktemp("ckpt") / "nano.pth")
    return path.read_bytes(), model


def _files(root: Path) -> list[str]:
    """The files under ``root`` but the empty NAME.lock files that serialise downloads."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not (p.suffix == ".lock" and p.stat().st_size == 0))


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- URLs
def test_url_download_then_cache_hit_with_the_server_down(server, cache, checkpoint):
    data, model = checkpoint
    server.files["/w/nano.pth"] = dict(data=data)
    url = server.url + "/w/nano.pth#sha256=" + hashlib.sha256(data).hexdigest()
    got = load_model(url)
    _same_weights(got, model)
    path = weights.url_cache_path(url)
    assert path.read_bytes() == data and path.parent.parent.parent == cache
    rel = str(path.relative_to(cache))
    assert _files(cache) == [rel, rel + ".sha256"]  # no .part left; the hash noted beside it
    server.stop()
    again = load_model(url)  # from the cache: no request can succeed now
    _same_weights(again, model)
    assert len([s for s in server.seen if s[0] == "GET"]) == 1


def test_sha256_mismatch_is_refused_and_nothing_kept(server, cache, checkpoint, capsys):
    data, _ = checkpoint
    server.files["/nano.pth"] = dict(data=data)
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f"sha256 mismatch: expected {wrong}, got "
                                         f"{hashlib.sha256(data).hexdigest()}"):
        weights.download(server.url + f"/nano.pth#sha256={wrong}", progress=False)
    assert _files(cache / "downloads") == []


def test_a_hash_given_later_checks_the_cached_copy(server, cache, checkpoint):
    data, _ = checkpoint
    server.files["/nano.pth"] = dict(data=data)
    url = server.url + "/nano.pth"
    weights.download(url, progress=False)  # no hash given
    good = hashlib.sha256(data).hexdigest()
    assert weights.download(f"{url}#sha256={good}", progress=False).read_bytes() == data
    with pytest.raises(ValueError, match=f"sha256 mismatch: expected {'1' * 64}, got {good}"):
        weights.download(f"{url}#sha256={'1' * 64}", progress=False)
    assert _files(cache / "downloads") == []  # the copy that does not match is gone
    assert len([s for s in server.seen if s[0] == "GET"]) == 1


def test_truncated_download_leaves_nothing(server, cache, checkpoint):
    data, _ = checkpoint
    server.files["/nano.pth"] = dict(data=data, truncate=len(data) // 2)  # no range support
    with pytest.raises(OSError, match="cannot download .*nothing was kept"):
        weights.download(server.url + "/nano.pth", progress=False)
    assert _files(cache / "downloads") == []


def test_interrupted_download_resumes_with_a_range_request(server, cache, checkpoint):
    data, model = checkpoint
    half = len(data) // 2
    server.files["/nano.pth"] = dict(data=data, truncate=half, ranges=True)
    url = server.url + "/nano.pth#sha256=" + hashlib.sha256(data).hexdigest()
    with pytest.raises(OSError, match="run again to resume"):
        weights.download(url, progress=False)
    final = weights.url_cache_path(url)
    assert not final.exists()  # the final name never holds a partial file
    part = final.with_name(final.name + ".part")
    assert part.stat().st_size == half
    got = weights.download(url, progress=False)
    assert got == final and got.read_bytes() == data and not part.exists()
    assert server.seen[-1] == ("GET", "/nano.pth", f"bytes={half}-")
    _same_weights(load_model(url), model)


def test_html_page_is_refused(server, cache):
    page = b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses</body></html>"
    server.files["/uc"] = dict(data=page, ctype="text/html; charset=utf-8")
    server.files["/sniffed.pth"] = dict(data=b"\n  <html><head></head></html>")  # wrong type given
    for path in ("/uc", "/sniffed.pth"):
        with pytest.raises(OSError, match="served an HTML page, not a weights file"):
            weights.download(server.url + path, progress=False)
    assert _files(cache / "downloads") == []


def test_404_and_no_server(server, cache):
    with pytest.raises(OSError, match="HTTP 404"):
        weights.download(server.url + "/missing.pth", progress=False)
    url = server.url + "/nano.pth"
    server.stop()
    with pytest.raises(OSError, match="cannot download .*no network"):
        weights.download(url, progress=False)
    assert _files(cache / "downloads") == []


def _mgmae(*args, env=None, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mgmae", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_cli_errors_are_one_line(server, cache, tmp_path):
    server.files["/page"] = dict(data=b"<html></html>", ctype="text/html")
    env = {"MGMAE_HOME": str(cache)}
    for src, words in [(server.url + "/missing.pth", "HTTP 404"),
                       (server.url + "/page", "HTML page"),
                       ("videomae-vit-b-k400-1600", "did you mean videomae-vit-b-k400-1600e")]:
        out = _mgmae("convert", src, str(tmp_path / "o.safetensors"), env=env)
        assert out.returncode == 2, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mgmae convert: error: ") and words in lines[0], \
            out.stderr
    assert _files(cache / "downloads") == []


# --------------------------------------------------------------------------- names
def test_a_name_hosted_on_drive_says_where_to_put_the_file(cache, checkpoint):
    data, model = checkpoint
    entry = next(w for w in weights._table().values() if w.get("browser"))
    target = cache / "weights" / entry["file"]
    with pytest.raises(FileNotFoundError) as e:
        load_model(entry["name"])
    assert entry["where"] in str(e.value) and str(target) in str(e.value)
    target.parent.mkdir(parents=True)
    target.write_bytes(data)  # what the user does in the browser
    _same_weights(load_model(entry["name"]), model)


def test_unknown_name_suggests_the_closest(cache):
    with pytest.raises(FileNotFoundError, match="did you mean vit-b-k400-mgmae-1600e"):
        load_model("vit-b-k400-mgmae-1600")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: nope.pth"):
        load_model("nope.pth")  # a file name stays a file name


def test_table_fields_and_listing():
    names = [w["name"] for w in weights._table().values()]
    assert len(names) == len(set(names))
    for w in weights._table().values():
        assert w["where"].startswith(("hf-hub:", "https://"))
        assert not w.get("sha256") or re.fullmatch(r"[0-9a-f]{64}", w["sha256"])
        if w.get("browser"):
            assert w.get("file")
    out = _mgmae("weights")
    assert out.returncode == 0 and "vit-b-k400-mgmae-1600e" in out.stdout and "81.8" in out.stdout
    out = _mgmae("weights", "vit-b-k400-mgmae-1600e-k400-ft")
    assert out.returncode == 0 and "MGMAE docs/MODEL_ZOO.md" in out.stdout


# --------------------------------------------------------------------------- Hugging Face hub
@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers", reason=HF_REASON)


def _randomise(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_repo(hub_cache: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` at ``main`` in huggingface_hub's cache layout
    (models--ORG--NAME/refs/main naming the commit, snapshots/COMMIT/ holding the files)."""
    root = hub_cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A temporary HF_HOME, offline (huggingface_hub read its settings when imported: they are
    set on its constants too)."""
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


def test_hub_id_offline_gives_the_logits_of_transformers(hf, hub_cache, cache):
    ref = _randomise(hf.VideoMAEForVideoClassification(hf.VideoMAEConfig(**TINY, num_labels=5)).eval())
    snap = _hub_repo(hub_cache, "acme/tiny-videomae")
    ref.save_pretrained(snap)
    (snap / "README.md").write_text("not needed, not read\n")
    ours = load_model("hf-hub:acme/tiny-videomae")
    theirs = hf.VideoMAEForVideoClassification.from_pretrained(snap).eval()
    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x.transpose(1, 2)).logits, atol=1e-5, rtol=0)
    assert ours.load_report.source == "hf"
    same = load_model("hf-hub:acme/tiny-videomae@main")
    _same_weights(same, ours)


def test_hub_path_to_a_raw_file_in_a_repo(hub_cache, cache, checkpoint):
    data, model = checkpoint
    snap = _hub_repo(hub_cache, "acme/raw-checkpoints")
    (snap / "distill").mkdir()
    (snap / "distill" / "nano.pth").write_bytes(data)
    _same_weights(load_model("hf-hub:acme/raw-checkpoints/distill/nano.pth"), model)
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache and HF_HUB_OFFLINE"):
        load_model("hf-hub:acme/raw-checkpoints/distill/other.pth")


def test_missing_hub_id_offline_is_one_line_through_the_cli(tmp_path):
    pytest.importorskip("huggingface_hub")
    out = _mgmae("convert", "hf-hub:acme/not-cached", str(tmp_path / "o.safetensors"),
                 env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
                      "MGMAE_HOME": str(tmp_path / "c")})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mgmae convert: error: hf-hub:acme/not-cached: ")
    assert "HF_HUB_OFFLINE" in lines[0]


def test_gated_and_missing_repos_through_hf_endpoint(server, tmp_path):
    """HF_ENDPOINT is honoured (a loopback 'hub'); the hub's error codes become one line."""
    pytest.importorskip("huggingface_hub")
    gated = dict(status=401, data=b"", headers={"X-Error-Code": "GatedRepo",
                                                "X-Error-Message": "Access to model is restricted"})
    server.files["/acme/gated/resolve/main/config.json"] = gated
    server.files["/acme/gone/resolve/main/config.json"] = dict(
        status=404, headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "MGMAE_HOME": str(tmp_path / "c")}
    for repo, words in [("acme/gated", "gated"), ("acme/gone", "no such repository")]:
        out = _mgmae("weights", "--fetch", f"hf-hub:{repo}", env=env)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and words in lines[0], out.stderr


def test_without_huggingface_hub_a_hub_id_is_one_clear_error(monkeypatch, cache):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    from mgmae.errors import USER_ERRORS

    with pytest.raises(USER_ERRORS, match="need the huggingface_hub package"):
        load_model("hf-hub:acme/anything")


def test_a_url_holding_equals_signs_is_a_checkpoint_not_an_override(server, cache, checkpoint,
                                                                     tmp_path):
    from mgmae.commands import split_positionals
    from mgmae.precheck import check_early

    url = "http://127.0.0.1:9/x.pth#sha256=" + "0" * 64
    assert split_positionals([url, "train.epochs=1"], 1) == ([url], ["train.epochs=1"])
    check_early("finetune", [url, "train.epochs=1"])  # not taken for an unknown key
    data, _ = checkpoint
    server.files["/nano.pth"] = dict(data=data)
    out = _mgmae("reconstruct", server.url + "/nano.pth#sha256=" + "0" * 64, "synthetic",
                 "-o", str(tmp_path / "out"), env={"MGMAE_HOME": str(cache)})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("mgmae reconstruct: error: ") and "sha256 mismatch" in lines[0]
    assert _files(cache / "downloads") == []


def test_concurrent_downloads_of_one_url_write_one_file(server, cache, checkpoint):
    """The ranks of a distributed run resolving the same URL: one downloads, the others wait
    for it and find the file."""
    from concurrent.futures import ThreadPoolExecutor

    data, _ = checkpoint
    server.files["/nano.pth"] = dict(data=data)
    url = server.url + "/nano.pth#sha256=" + hashlib.sha256(data).hexdigest()
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: weights.download(url, progress=False), range(4)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == data
    assert len([s for s in server.seen if s[0] == "GET"]) == 1


def test_listing_the_weights_imports_no_torch():
    code = ("import sys, io, contextlib\nfrom mgmae.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['weights'])\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr


def test_our_checkpoint_by_url_keeps_its_config_for_eval_and_extract(server, cache, checkpoint):
    """eval / extract read the config stored in our checkpoints: through a URL too."""
    from mgmae.engine.evaluate import stored_checkpoint

    data, _ = checkpoint
    server.files["/ft/checkpoint-best.pth"] = dict(data=data)
    stored = stored_checkpoint(server.url + "/ft/checkpoint-best.pth")
    assert stored is not None and stored.get("format") == "mgmae" and isinstance(stored["config"], dict)
