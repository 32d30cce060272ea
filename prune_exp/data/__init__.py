"""LightningDataModules. Every one carves its validation split from the training set."""
