"""Moved to ``leam.maps.explain`` (explain one photo against references)."""

from leam.maps.explain import *  # noqa: F401,F403
from leam.maps.explain import Explanation, embed_faces, explain_face, explain_file, reference_embedding  # noqa: F401
