"""Generated protobuf code (tools/gen_protos.py). Do not edit."""
