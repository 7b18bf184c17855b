"""Long recordings as timelines: one segment grid over a recording, each segment scored once, windows of N
segments every hop as rolling sums, per person, resumable, long files in chunks on the worker pool; the plot.
"""
