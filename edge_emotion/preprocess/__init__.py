"""One clip -> model inputs: segment plan, face crops, spectrograms. Shared by training and scoring."""
