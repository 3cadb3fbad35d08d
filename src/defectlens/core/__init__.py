"""What image and audio detectors both stand on: the estimator base and its setting checks, the fit
context, checkpoint files and the epoch loop."""
