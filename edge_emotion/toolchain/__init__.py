"""The toolchain wing: everything that needs torch or makes artifacts (model, checkpoints, training, export,
calibration, the synthetic corpus, the demo, the training box cache on Ray). The runtime never imports it;
the torch backend (edge_emotion.backends.torch_backend) is the one lazy door into it.
"""
