"""vaeok: VAE + ordinary-kriging data augmentation for small-data materials regression."""

__version__ = "0.1.0"
