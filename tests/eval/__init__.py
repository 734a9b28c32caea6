"""The evaluation: router accuracy and end-to-end tasks against the embedded model."""
