"""HTTP front end: OGC WPS 1.0/2.0, OGC API - Processes, the web form and downloads."""
