"""Online experiments: shadow, A/B and team-draft interleaving, judged by UBI clicks."""
