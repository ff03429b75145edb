"""DSM-OPT: digital surface models from Pléiades stereo pairs and triplets (RPC)."""
