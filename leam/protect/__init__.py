"""Person-specific privacy protection guided by LEAM: change the few pixels of a person's photos that
the models rely on, so that the photos no longer match the person's other photos.

``mask`` (which pixels), ``methods`` (the protections and baselines, one file each, registered once),
``warp`` (each model's differentiable view of the photo), ``optimise`` (what to put there: projected
gradient steps on an ensemble), ``core`` (one photo, all methods and budgets), ``save`` (written like
the original), ``evaluate`` (measured on the saved file), ``api`` (the ``leam protect`` function),
``study`` (``leam protect-eval``, on the study's ``RunStore``), ``runs`` (its run folder, read without
torch), ``summary``.

Importing ``leam.protect`` (or its ``methods``, ``runs`` and ``summary``) loads no model: the names
below are loaded on first use.
"""

from __future__ import annotations

__all__ = ["METHODS", "ProtectConfig", "Protected", "protect_photo"]


def __getattr__(name: str):
    if name in __all__:
        from leam.protect import core

        return getattr(core, name)
    raise AttributeError(f"module 'leam.protect' has no attribute {name!r}")
