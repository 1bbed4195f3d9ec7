"""Where a run executes: Ray set-up and resource checks, the shared-storage probe, and who owns
an output directory."""
