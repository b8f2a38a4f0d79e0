"""implicit-vae: variational autoencoders with implicit posteriors and priors."""

__version__ = "0.1.0"
