"""INT8 calibration: real segment pairs chosen deterministically (data), ranges, cache and Q/DQ quantization (int8)."""
