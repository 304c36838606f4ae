"""Console lines, a progress bar and JSONL metrics for training runs."""
