"""Helpers shared by every layer of ul4m4 (files, messages, validation, readers).

The lowest layer of the package: these modules import nothing else of ul4m4
except each other, so any module may use them. Their names are public within
the package; the package itself is private to ul4m4.
"""
