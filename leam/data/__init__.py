"""Photos in: folders of ``<identity>/<photos>`` (``folders``), a study's data set with its optional
manifest (``dataset``), and photos read into RGB arrays (``images``). NumPy and Pillow only: no torch."""
