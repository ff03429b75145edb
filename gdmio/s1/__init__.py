"""Sentinel-1 IW SLC ingestion: SAFE products, bursts, orbits."""
