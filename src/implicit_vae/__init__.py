"""implicit-vae."""
