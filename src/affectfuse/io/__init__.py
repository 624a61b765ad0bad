"""Media input: probing, decoding and sampling (PyAV), faces, generated media."""
