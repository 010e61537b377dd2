"""The MIDI-B-style score of the archive's own ingest pipeline on a small planted corpus
(tests/midib.py): at least 99.95% in every category and no legible pixel text released.
benchmarks/bench_midib.py runs a larger corpus and prints the percentages."""

from __future__ import annotations

import shutil

import pytest

from archive.paths import POLICIES_DIR
from tests.midib import build_corpus, run_pipeline, score_outputs

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="Debian package tesseract-ocr not installed"
)


def test_every_category_meets_the_target_and_no_pixel_text_is_released():
    corpus = build_corpus(patients=2)
    score = score_outputs(corpus, run_pipeline(corpus, POLICIES_DIR))
    print("\n".join(score.lines()))
    for category, (passed, total) in score.counts.items():
        assert total > 0, category
        assert score.percent(category) >= 99.95, (category, passed, total)
    # the text-free ultrasound images are released, the ones with text are not legible
    assert score.released >= 2 * 3 + 2
    hidden, planted = score.counts["pixel_text_hidden"]
    assert hidden == planted == 4
