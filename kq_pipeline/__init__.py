"""kq-pipeline."""
