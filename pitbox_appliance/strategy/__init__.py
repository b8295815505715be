"""Race strategy from lap timing: stints, pit stops and online pit and lap-time predictions."""
