"""Held-out evaluation: offline adaptation and rollouts, and online fine-tuning (MACAW and
Offline PEARL)."""
