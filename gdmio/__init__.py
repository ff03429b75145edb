"""Shared I/O for every service: raster reading, common grids, blocks, COGs, quicklooks, STAC."""
