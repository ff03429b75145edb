"""Pure numeric kernels: NumPy arrays in, NumPy arrays out; no I/O, no logging."""
