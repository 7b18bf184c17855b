"""edge-emotion: audio-visual emotion recognition by temporal aggregation (Birhala et al., 2020)."""

__version__ = "0.1.0"

#: CREMA-D's six emotions, in the order of the model's outputs.
LABELS: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
