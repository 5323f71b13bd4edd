"""Extractors: turn one cluster's API into kubequery rows (native) or run kubequery itself."""
