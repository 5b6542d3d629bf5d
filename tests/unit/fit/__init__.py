"""Tests of streams/fit: scale, per-frame measurements and their aggregation."""
