"""Comparing outputs with baselines: perceptual hashes and pixel metrics, the criteria a
comparison must hold, the one baseline lifecycle and the store on disk, each media kind
(video, audio, latents, exact files), calibration, node-interface snapshots. Pure: knows nothing
of the server, reports or pytest."""
