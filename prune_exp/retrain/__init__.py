"""What happens after each pruning round: LR schedules and the retraining strategies."""
