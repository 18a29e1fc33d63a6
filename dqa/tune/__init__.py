"""The Tuner: a person's A/B selections, DPO rows built from them, training, and agreement before and after."""
