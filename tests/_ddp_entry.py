"""``torchrun`` entry of tests/test_distributed.py: ``implicit-vae`` with the sampling noise off.

With ``IMPLICIT_VAE_TEST_ZERO_NOISE=1`` every draw of ``torch.randn``/``randn_like`` without an explicit
generator returns zeros, so posterior, prior and contrast samples are deterministic functions of the
data; the data order and dynamic binarisation (seeded generators) are unchanged. Then W processes ×
B/W rows must reproduce one process × B rows up to floating-point rounding, which isolates what
multi-process training adds (sharding and gradient averaging) from per-rank noise.
"""

from __future__ import annotations

import os
import sys

import torch


def zero_noise(patch=setattr) -> None:
    """Replace ``torch.randn`` and ``torch.randn_like`` by zeros (``patch``: e.g. monkeypatch.setattr)."""
    randn = torch.randn

    def zeros(*size, generator=None, **kw):
        if generator is not None:  # seeded draws (data, fixed initialisations) stay random
            return randn(*size, generator=generator, **kw)
        return torch.zeros(*size, **kw)

    patch(torch, "randn", zeros)
    patch(torch, "randn_like", lambda t, **kw: torch.zeros_like(t, **kw))


if __name__ == "__main__":
    if os.environ.get("IMPLICIT_VAE_TEST_ZERO_NOISE") == "1":
        zero_noise()
    from implicit_vae.cli import main

    sys.exit(main(sys.argv[1:]))
