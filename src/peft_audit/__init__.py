"""peft-audit: audit parameter-efficient fine-tunes for safety and fairness drift."""

__version__ = "0.1.0"
