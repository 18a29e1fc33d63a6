"""Weight-free measures: per-video quality measures (`video`), no-reference picture quality (`nr`), the pairwise
judge."""
