"""The embedded stack for laptops, demos and tests: Kafka (KRaft), Triton and the Faust workers as processes."""
