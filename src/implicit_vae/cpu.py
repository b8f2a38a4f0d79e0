"""CPU floating-point mode: denormal (subnormal) numbers flushed to zero.

A trained Bernoulli decoder gives many pixels logits of -90 or below (the border of MNIST is
always 0), and exp(-|logit|) and sigmoid(logit) there fall into float32's subnormal range
(below 1.2e-38), where x86 arithmetic is many times slower. On the trained binarised-MNIST
z = 10 semi-implicit run, with subnormals flushed, log p(x|z) and its gradient for 8 chains x 128
images ran 2.1x faster and a training step (S = 20) 2.7x faster; the values agree bit for bit, and
the gradients to within a subnormal (``python benchmarks/denormals.py --run <run dir>``,
``benchmarks/results/denormals.json``: medians of 9 interleaved pairs on one thread).

Flushing is a mode of each CPU thread, not of a tensor, inherited by the threads it starts, and
torch cannot read it back, so the library's functions never change it; the ``implicit-vae``
command and the benchmarks, which own their process, turn it on first thing. In your own loop,
call :func:`flush_denormals` once before any torch work: the threads torch starts later inherit
the mode of the thread that starts them.
"""

from __future__ import annotations


def flush_denormals() -> bool:
    """Treat subnormal float inputs and results as zero on this CPU thread and on the threads it
    starts from now on; True where the CPU supports it (x86 with SSE3), False otherwise (a no-op,
    e.g. on ARM), where CUDA is unaffected either way."""
    import torch

    return bool(torch.set_flush_denormal(True))
