"""One module per pipeline stage; each asset calls into r1_assets."""
