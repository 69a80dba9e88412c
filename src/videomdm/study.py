"""Results of a blind comparison study: votes from the viewer's comparison page scored against its key.

A key (``<page>.key.json``, written by :func:`videomdm.viewer.write_comparison`) says for every pair on which side
run A was shown. A votes file (downloaded from the page by each rater) lists ``{"pair": i, "choice": "left" |
"right" | "same"}``. :func:`score_votes` maps every vote to A, B or no preference.

The preference rate for A is ``n_A / (n_A + n_B)`` (votes without a preference are counted and reported, not in
the rate). Its confidence interval is the **Wilson score interval** (E. B. Wilson, "Probable inference, the law of
succession, and statistical inference", JASA 1927), which keeps its coverage for small n and rates near 0 or 1
where the normal approximation does not; the two-sided **exact binomial test** against 0.5 gives the p-value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from scipy.stats import binomtest, norm

__all__ = ["StudyError", "StudyResult", "wilson_interval", "load_key", "score_votes", "study_results",
           "format_result"]

_CHOICES = ("left", "right", "same")


class StudyError(ValueError):
    """A key or votes file that cannot be scored; the message names the file."""


@dataclass
class StudyResult:
    prefer_a: int
    prefer_b: int
    no_preference: int
    raters: int
    rate_a: float
    interval: tuple[float, float]
    confidence: float
    p_value: float
    run_a: str
    run_b: str


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion:
    ``(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)``, z the normal quantile of the confidence."""
    if trials <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, {trials}], got {successes}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise StudyError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise StudyError(f"{path}: not valid JSON ({err})") from None


def load_key(path: str | Path) -> dict[str, Any]:
    key = _read_json(Path(path))
    if not isinstance(key, dict) or key.get("format") != "videomdm-study-key" or "pairs" not in key:
        raise StudyError(f"{path}: not a study key written by `videomdm view --compare`")
    return key


def score_votes(key: dict[str, Any], votes: dict[str, Any], where: str) -> tuple[int, int, int]:
    """(votes for A, votes for B, no preference) of one rater's votes file."""
    if not isinstance(votes, dict) or votes.get("format") != "videomdm-votes":
        raise StudyError(f"{where}: not a votes file downloaded from a videomdm comparison page")
    if votes.get("study_id") != key["study_id"]:
        raise StudyError(f"{where}: votes for study {votes.get('study_id')!r}, but the key is for study "
                         f"{key['study_id']!r}")
    sides = {p["pair"]: p["a_side"] for p in key["pairs"]}
    counts = {"a": 0, "b": 0, "same": 0}
    seen: set[int] = set()
    for vote in votes.get("votes", []):
        pair, choice = vote.get("pair"), vote.get("choice")
        if pair not in sides:
            raise StudyError(f"{where}: vote for unknown pair {pair!r}")
        if choice not in _CHOICES:
            raise StudyError(f"{where}: pair {pair}: unknown choice {choice!r} (expected one of {_CHOICES})")
        if pair in seen:
            raise StudyError(f"{where}: pair {pair} voted twice")
        seen.add(pair)
        counts["same" if choice == "same" else "a" if choice == sides[pair] else "b"] += 1
    return counts["a"], counts["b"], counts["same"]


def study_results(votes_files: Sequence[str | Path], key_file: str | Path, confidence: float = 0.95) -> StudyResult:
    """Pool the votes of every file (one per rater) and compute the preference rate for run A (module docstring)."""
    if not votes_files:
        raise StudyError("no votes files given")
    key = load_key(key_file)
    a = b = same = 0
    for path in votes_files:
        da, db, ds = score_votes(key, _read_json(Path(path)), str(path))
        a, b, same = a + da, b + db, same + ds
    if a + b == 0:
        raise StudyError(f"{', '.join(map(str, votes_files))}: no vote prefers either side; no rate to compute")
    return StudyResult(prefer_a=a, prefer_b=b, no_preference=same, raters=len(votes_files), rate_a=a / (a + b),
                       interval=wilson_interval(a, a + b, confidence), confidence=confidence,
                       p_value=float(binomtest(a, a + b, 0.5).pvalue), run_a=key["run_a"], run_b=key["run_b"])


def format_result(r: StudyResult) -> str:
    lo, hi = r.interval
    return (f"A = {r.run_a}\nB = {r.run_b}\n"
            f"{r.raters} rater(s): {r.prefer_a} votes for A, {r.prefer_b} for B, {r.no_preference} without preference\n"
            f"preference for A: {100 * r.rate_a:.1f} % ({100 * r.confidence:.0f} % Wilson score interval "
            f"{100 * lo:.1f}–{100 * hi:.1f} %); exact binomial test against 50 %: p = {r.p_value:.3g}")
