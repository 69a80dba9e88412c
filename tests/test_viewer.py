"""The HTML viewer and the blind comparison: inputs, pairing, key, study statistics; the pages in headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from synthetic import walk
from videomdm.camera import intrinsics, look_at, project_to_pixels
from videomdm.cli import main
from videomdm.data.clip import Clip, save_clip
from videomdm.data.errors import DataError
from videomdm.study import StudyError, study_results, wilson_interval
from videomdm.viewer import ViewerError, collect_motions, pair_by_caption, write_comparison, write_viewer


def sample_folder(root: Path, texts: list[str], seed: int) -> Path:
    root.mkdir(parents=True)
    np.save(root / "joints.npy", np.stack([walk(30, seed=seed + i) for i in range(len(texts))]))
    (root / "samples.json").write_text(json.dumps({"fps": 20.0, "texts": texts}))
    return root


def camera_clip(path: Path) -> Path:
    """A clip with ground truth, a teacher, 2D keypoints and a camera looking at the motion."""
    gt = walk(30)
    R, t = look_at(torch.tensor([0.0, 1.5, -6.0], dtype=torch.float64), torch.tensor([0.0, 1.0, 0.0],
                                                                                       dtype=torch.float64))
    K = intrinsics(1000.0, (640, 480), dtype=torch.float64)
    keypoints = project_to_pixels(torch.as_tensor(gt, dtype=torch.float64)[None], K, R[None], t[None])[0].numpy()
    save_clip(path, Clip(name="filmed", fps=20.0, skeleton="smpl22", source="test", gt_3d=gt, teacher_3d=gt + 0.03,
                         keypoints_2d=keypoints.astype(np.float32), confidence=np.ones(keypoints.shape[:2], np.float32),
                         keypoint_skeleton="smpl22", K=K.numpy(), R=R.numpy(), t=t.numpy(), text=["walks"],
                         image_size=(640, 480)))
    return path


# --- inputs and page (no browser) ------------------------------------------------------------------------------------


def test_collect_motions_reads_samples_clips_and_folders(tmp_path: Path) -> None:
    samples = sample_folder(tmp_path / "samples", ["a person walks", "someone turns"], seed=0)
    clip = camera_clip(tmp_path / "clips" / "filmed.npz")
    motions = collect_motions([samples, clip])
    assert [m.label for m in motions] == ["joints[0]", "joints[1]", "filmed · teacher", "filmed · ground truth"]
    assert [m.caption for m in motions] == ["a person walks", "someone turns", "walks", "walks"]
    gt_view = motions[3].view2d
    assert gt_view is not None and (gt_view["width"], gt_view["height"]) == (640, 480)
    np.testing.assert_allclose(gt_view["reprojection"], gt_view["keypoints"], atol=1e-3)  # gt reprojects exactly
    assert len(collect_motions([samples, clip], max_motions=3)) == 3
    with pytest.raises(ViewerError, match="no such file"):
        collect_motions([tmp_path / "missing.npy"])
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((4, 22, 3), np.nan))
    with pytest.raises(DataError, match=r"bad.npy: joints of shape \(4, 22, 3\) contain NaN"):
        collect_motions([bad])


def test_lifted_clips_get_their_keypoint_panel(tmp_path: Path) -> None:
    from videomdm.data.clip import write_dataset_index

    dataset = tmp_path / "data"
    camera_clip(dataset / "clips" / "test" / "filmed.npz")
    write_dataset_index(dataset, name="t", fps=20.0, skeleton="smpl22", splits={"test": ["clips/test/filmed.npz"]},
                        license=None, extra={})
    lifted = tmp_path / "lifted"
    lifted.mkdir()
    np.save(lifted / "filmed.npy", walk(30))  # the ground truth itself: reprojects onto the keypoints
    np.save(lifted / "other.npy", walk(30, seed=4))
    filmed, other = collect_motions([lifted], clips_from=dataset)
    assert filmed.caption == "walks" and other.view2d is None
    np.testing.assert_allclose(filmed.view2d["reprojection"], filmed.view2d["keypoints"], atol=1e-3)
    np.save(lifted / "filmed.npy", walk(20))
    with pytest.raises(ViewerError, match="20 frames but clip filmed has 30"):
        collect_motions([lifted / "filmed.npy"], clips_from=dataset)


def test_page_is_self_contained_and_escapes_captions(tmp_path: Path) -> None:
    samples = sample_folder(tmp_path / "s", ["</script><script>alert(1)</script>"], seed=0)
    page = write_viewer(collect_motions([samples]), tmp_path / "view.html").read_text()
    assert "</script><script>alert" not in page
    assert not re.search(r"https?://", page)  # nothing to fetch when opened
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)


def test_pairs_by_caption_in_order() -> None:
    assert pair_by_caption(["x", "y", "x", "z"], ["x", "x", "y", "w"]) == [(0, 0), (1, 2), (2, 1)]


def test_comparison_hides_identities_and_writes_a_key(tmp_path: Path) -> None:
    a = sample_folder(tmp_path / "run_a" / "samples", ["walk", "run", "jump", "walk"], seed=0)
    b = sample_folder(tmp_path / "run_b_samples", ["walk", "jump", "walk", "sit"], seed=10)
    page, key_file = write_comparison(tmp_path / "run_a", b, tmp_path / "study.html", seed=7)
    key = json.loads(key_file.read_text())
    assert key["seed"] == 7 and key["run_a"] == str(a) and len(key["pairs"]) == 3
    assert sorted((p["caption"], p["a_index"], p["b_index"]) for p in key["pairs"]) == [
        ("jump", 2, 1), ("walk", 0, 0), ("walk", 3, 2)]
    html = page.read_text()
    assert str(a) not in html and str(b) not in html  # no run path, no seed, no side mapping in the page
    assert '"seed"' not in html and "a_side" not in html and key["study_id"] in html
    _, key_again = write_comparison(tmp_path / "run_a", b, tmp_path / "again.html", seed=7)
    sides = [p["a_side"] for p in json.loads(key_again.read_text())["pairs"]]
    assert sides == [p["a_side"] for p in key["pairs"]]  # the recorded seed reproduces the draw


# --- study statistics ------------------------------------------------------------------------------------------------


def test_wilson_interval_matches_hand_computation() -> None:
    lo, hi = wilson_interval(8, 10)  # z = 1.959964: (0.8 + 0.192073 ± 0.235653) / 1.384146
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_study_results_maps_sides_to_runs(tmp_path: Path) -> None:
    key = {"format": "videomdm-study-key", "version": 1, "study_id": "s1", "seed": 0, "run_a": "A", "run_b": "B",
           "pairs": [{"pair": 0, "a_side": "left"}, {"pair": 1, "a_side": "right"}, {"pair": 2, "a_side": "left"}]}
    (tmp_path / "key.json").write_text(json.dumps(key))
    votes = {"format": "videomdm-votes", "version": 1, "study_id": "s1", "voter": "x",
             "votes": [{"pair": 0, "choice": "left"}, {"pair": 1, "choice": "right"}, {"pair": 2, "choice": "same"}]}
    (tmp_path / "v1.json").write_text(json.dumps(votes))
    votes["votes"] = [{"pair": 0, "choice": "right"}, {"pair": 1, "choice": "right"}]
    (tmp_path / "v2.json").write_text(json.dumps(votes))
    result = study_results([tmp_path / "v1.json", tmp_path / "v2.json"], tmp_path / "key.json")
    assert (result.prefer_a, result.prefer_b, result.no_preference, result.raters) == (3, 1, 1, 2)
    assert result.rate_a == 0.75 and result.interval == pytest.approx(wilson_interval(3, 4))
    assert result.p_value == pytest.approx(0.625)  # exact two-sided binomial, 3 of 4
    votes["study_id"] = "other"
    (tmp_path / "v3.json").write_text(json.dumps(votes))
    with pytest.raises(StudyError, match="v3.json: votes for study 'other'"):
        study_results([tmp_path / "v3.json"], tmp_path / "key.json")


# --- headless Chromium --------------------------------------------------------------------------------------------


def chromium(*args: str, timeout: float = 90) -> str:
    """Run headless Chromium; returns its stdout. Output goes through files, not pipes: helper processes that
    outlive the browser would otherwise hold a pipe open."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run must install Debian's chromium package")
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it)")
    with tempfile.TemporaryDirectory() as work:
        out, err = Path(work) / "stdout", Path(work) / "stderr"
        with out.open("w") as stdout, err.open("w") as stderr:
            subprocess.run(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={work}/profile", "--window-size=1000,1400", *args],
                stdout=stdout, stderr=stderr, timeout=timeout, check=True)
        return out.read_text()


def dump_dom(page: Path, play_ms: int = 1200) -> str:
    return chromium(f"--virtual-time-budget={play_ms}", "--dump-dom", page.as_uri())


def page_errors(dom: str) -> str:
    found = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert found, "the page lost its error box"
    return found.group(1)


def inject(page: Path, script: str, out: Path) -> Path:
    """A copy of ``page`` with ``script`` appended at the end of the body (test-only code)."""
    out.write_text(page.read_text().replace("</body>", f"<script>{script}</script>\n</body>"))
    return out


@pytest.mark.integration
def test_viewer_plays_in_chromium_without_errors(tmp_path: Path) -> None:
    samples = sample_folder(tmp_path / "samples", ["a person walks", "someone turns"], seed=0)
    clip = camera_clip(tmp_path / "filmed.npz")
    page = write_viewer(collect_motions([samples, clip]), tmp_path / "view.html")
    dom = dump_dom(page)
    assert page_errors(dom) == "" and "<title>ERROR" not in dom
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-ready="1"' in body
    assert int(re.search(r'data-frame="(\d+)"', body).group(1)) > 5  # it played
    assert dom.count("<canvas") == 4 + 2 and dom.count('class="panel2d"') == 2
    assert "a person walks" in dom

    shot = tmp_path / "shot.png"
    chromium("--virtual-time-budget=1200", f"--screenshot={shot}", page.as_uri())
    import imageio.v3 as iio

    image = iio.imread(shot)[..., :3].astype(int)

    def pixels(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(image - np.array(rgb)).sum(-1) < 40).sum())

    assert pixels((214, 39, 40)) > 50 and pixels((31, 119, 180)) > 50  # left and right bones drawn
    assert pixels((44, 160, 44)) > 20  # keypoints in the 2D panel


@pytest.mark.integration
def test_viewer_controls_in_chromium(tmp_path: Path) -> None:
    """Pause holds the frame, the scrubber moves it, the speed setting is read, dragging a view orbits it."""
    samples = sample_folder(tmp_path / "samples", ["walk"], seed=0)
    page = write_viewer(collect_motions([samples]), tmp_path / "view.html")
    script = """
      var result = {};
      var frame = function () { return Number(document.body.dataset.frame); };
      document.getElementById("play").click();  // pause
      var scrub = document.getElementById("scrub");
      scrub.value = "200"; scrub.dispatchEvent(new Event("input"));
      result.scrubbed = frame();
      var canvas = document.querySelector("canvas"), before = canvas.toDataURL();
      var at = function (type, x) {
        canvas.dispatchEvent(new PointerEvent(type, {clientX: x, clientY: 100, pointerId: 1, bubbles: true}));
      };
      at("pointerdown", 100); at("pointermove", 180); at("pointerup", 180);
      result.orbited = canvas.toDataURL() !== before;
      setTimeout(function () {
        result.paused = frame();
        document.getElementById("play").click();  // play at 2x
        var speed = document.getElementById("speed");
        speed.value = "2"; speed.dispatchEvent(new Event("change"));
        setTimeout(function () {
          result.playing = frame();
          var out = document.createElement("pre"); out.id = "test-controls";
          out.textContent = JSON.stringify(result); document.body.appendChild(out);
        }, 400);
      }, 400);"""
    dom = dump_dom(inject(page, script, tmp_path / "controls.html"), play_ms=1500)
    assert page_errors(dom) == ""
    result = json.loads(re.search(r'<pre id="test-controls">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    assert result["scrubbed"] == 5  # a fifth of 1.45 s at 20 fps
    assert result["paused"] == result["scrubbed"]  # nothing moved while paused
    assert result["orbited"] is True
    assert 17 <= result["playing"] <= 25  # 0.4 s at 2x speed and 20 fps = 16 frames later


@pytest.mark.integration
@pytest.mark.parametrize("broken", ["null.property;", "function ( {"], ids=["throws", "syntax-error"])
def test_error_check_catches_a_page_that_fails(tmp_path: Path, broken: str) -> None:
    samples = sample_folder(tmp_path / "samples", ["walk"], seed=0)
    page = write_viewer(collect_motions([samples]), tmp_path / "view.html")
    dom = dump_dom(inject(page, broken, tmp_path / "broken.html"))
    assert page_errors(dom) != "" and "<title>ERROR" in dom


@pytest.mark.integration
def test_blind_comparison_votes_round_trip(tmp_path: Path, capsys) -> None:
    sample_folder(tmp_path / "a", ["walk", "run", "jump"], seed=0)
    sample_folder(tmp_path / "b", ["jump", "walk", "run"], seed=5)
    page = tmp_path / "study.html"
    assert main(["view", "--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(page),
                 "--seed", "3"]) == 0
    # A rater who always prefers the left motion; the page's own download function gives the votes.
    script = """
      ["left", "left", "left"].forEach(function (c) { document.getElementById("vote-" + c).click(); });
      var out = document.createElement("pre"); out.id = "test-votes";
      out.textContent = JSON.stringify(window.videomdmVotes()); document.body.appendChild(out);"""
    dom = dump_dom(inject(page, script, tmp_path / "rater.html"), play_ms=300)
    assert page_errors(dom) == ""
    votes_text = re.search(r'<pre id="test-votes">(.*?)</pre>', dom, re.S).group(1)
    votes = json.loads(votes_text.replace("&quot;", '"').replace("&amp;", "&"))
    assert len(votes["votes"]) == 3 and {v["choice"] for v in votes["votes"]} == {"left"}
    (tmp_path / "votes.json").write_text(json.dumps(votes))
    key = json.loads((tmp_path / "study.key.json").read_text())
    expected_a = sum(p["a_side"] == "left" for p in key["pairs"])
    capsys.readouterr()
    assert main(["study-results", str(tmp_path / "votes.json"), "--key", str(tmp_path / "study.key.json")]) == 0
    assert f"{expected_a} votes for A, {3 - expected_a} for B" in capsys.readouterr().out
