"""Import and export offline data: the authors' per-task HDF5 layout and Minari datasets."""
