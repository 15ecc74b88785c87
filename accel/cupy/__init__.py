"""CuPy host code; the CUDA C sources live beside it as .cu files."""
