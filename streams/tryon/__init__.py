"""Try-on: the catalogue of items and the rendering of an item onto a shopper's frame, one module per kind of
item. Pure numpy + OpenCV: the same code runs inside Triton (the `tryon` model's render stage) and in tests."""
