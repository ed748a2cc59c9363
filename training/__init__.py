"""Training, export and evaluation of SCGAN checkpoints (imports `model`, never `service`)."""
