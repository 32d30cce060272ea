"""Lightning glue: the LightningModule and the callbacks that run prune-retrain cycles."""
