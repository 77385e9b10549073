"""egodistill: multimodal knowledge distillation for egocentric action recognition."""

__version__ = "0.1.0"
