"""Analytics of try-on events: the analytics worker's windowed aggregates and recommendations (`vto analytics
worker`), the offline Parquet export and DuckDB report, and the synthetic sessions that test them
(docs/analytics.md)."""
