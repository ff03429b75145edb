"""GDM-OPT: ground deformation from optical image time series by sub-pixel correlation."""
