"""Statistics as sums of bounded per-row terms: plans, local evaluation, decoding."""
