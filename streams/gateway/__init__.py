"""The browser gateway: the try-on page, and each shopper's WebSocket turned into Kafka records and back
(`server.py`: HTTP, WebSocket, protocol; `relay.py`: Kafka, routing by reply partition). docs/gateway.md."""
