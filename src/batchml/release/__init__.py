"""Releases: `make package` builds one into dist/, `make deploy` puts it on AWS (deploy.py)."""
