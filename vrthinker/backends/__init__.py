"""Conversational judge backends behind one narrow interface (base.py): in-process transformers, a server, a script."""
