"""What we know about slides: the dataset table and pixel annotations; no torch here."""
