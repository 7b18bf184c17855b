"""Training on CREMA-D (or the synthetic corpus): index, folds, prepare cache, Dataset, loop, cv, figures.

    crema    clip names -> labels, index of a corpus folder, actor-independent folds, human baseline
    prepare  decode + MTCNN once per clip -> per-frame boxes and the waveform in CACHE
    dataset  torch Dataset over the cache, through the scorer's own preprocessing
    loop     one fold's training (paper or modern recipe), exact resume, DDP under torchrun
    cv       all folds, mean +- std, sweep over N
    figures  loss/accuracy curves, confusion matrix, accuracy vs N (PNG)

Import the submodules directly; this package imports nothing heavy by itself.
"""
