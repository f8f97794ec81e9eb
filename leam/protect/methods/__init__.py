"""Protection methods, one small file each, registered once (``register_method``); the CLI's choices, the
evaluation and the report find them with ``list_methods`` and ``method_spec``. Registration order is the
order methods are listed, compared and (for the non-optimised ones) made in."""

from leam.protect.methods import leam, consensus, random, black, dense  # noqa: F401,I001  (registers, in order)
from leam.protect.methods._registry import (
    Method,
    MethodSpec,
    Protected,
    get_method,
    list_methods,
    method_spec,
    register_method,
)

__all__ = ["Method", "MethodSpec", "Protected", "get_method", "list_methods", "method_spec", "register_method"]
