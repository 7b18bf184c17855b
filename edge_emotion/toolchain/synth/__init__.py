"""The embedded default corpus: synthetic CREMA-D-shaped clips whose emotion is in the face and the voice.

`make_corpus(out_dir)` writes out_dir/VideoFlash/AAAA_SSS_EEE_XX.flv files that
go through the same decode -> MTCNN -> spectrogram path as the real corpus. See
`corpus.py` for which cue each emotion carries, `face.py` and `voice.py` for how.
"""

from edge_emotion.toolchain.synth.corpus import (
    AUDIO_CUE,
    SENTENCES,
    VIDEO_CUE,
    ClipSpec,
    RenderedClip,
    SynthConfig,
    actor_traits,
    make_corpus,
    plan_corpus,
    render_clip,
    write_clip,
    write_corpus,
)

__all__ = [
    "AUDIO_CUE",
    "SENTENCES",
    "VIDEO_CUE",
    "ClipSpec",
    "RenderedClip",
    "SynthConfig",
    "actor_traits",
    "make_corpus",
    "plan_corpus",
    "render_clip",
    "write_clip",
    "write_corpus",
]
