"""Body measurements for size advice: metric scale, per-frame measurements and their aggregation over a session."""
