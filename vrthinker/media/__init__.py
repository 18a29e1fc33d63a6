"""Video in: the one decoder (`decode`) and the judge's grid of frames over it (`frame_grid`)."""
