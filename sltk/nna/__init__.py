"""Neural-network accelerator (NNA) emulation and sub-8-bit quantization."""
