"""Face features per clip in OpenFace 2's CSV schema, from OpenFace itself or the built-in facemesh backend."""
