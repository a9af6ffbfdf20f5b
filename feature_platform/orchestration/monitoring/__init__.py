"""Monitoring rules shared by every domain: freshness policies derived from the feature registry."""
