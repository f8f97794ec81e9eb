"""Person-specific privacy protection guided by LEAM: change the few pixels of a person's photos that
the models rely on, so that the photos no longer match the person's other photos.

``mask`` (which pixels), ``warp`` (each model's differentiable view of the photo), ``optimise`` (what
to put there: projected gradient steps on an ensemble), ``core`` (one photo, all methods and budgets),
``save`` (written like the original), ``evaluate`` (measured on the saved file), ``api`` (the
``leam protect`` function), ``study`` (``leam protect-eval``), ``summary`` and ``report``.
"""

from leam.protect.core import METHODS, ProtectConfig, Protected, protect_photo

__all__ = ["METHODS", "ProtectConfig", "Protected", "protect_photo"]
