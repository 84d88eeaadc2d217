"""`make bench`: the pipeline against the seed's loader and the parse floor; writes RESULTS.md."""
