"""GDM-SAR: ground deformation from a coregistered SLC stack (interferograms to velocity)."""
