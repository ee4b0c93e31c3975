"""Process entry points: venue workers, the aggregator and the supervisor behind `fh run`."""
